#!/usr/bin/env node
// The real-browser check: headless Chromium opens Converse.js (index.html, served by
// the hub from http_files_dir), which logs in over XMPP-over-WebSocket (RFC 7395);
// then, through Converse's own UI, it opens a chat with the peer, types and sends a
// message, and waits until the peer's answer shows in the page.
//
//   node tests/interop/browser/run.js URL PEER_JID EXPECTED_TEXT TEXT_TO_SEND
//       [--timeout SECONDS (40)] [--screenshot FILE.png] [--upload FILE]
//
//   URL            the page, e.g. https://localhost:PORT/index.html?jid=juliet%40localhost
//                  &password=balcony&websocket_url=wss%3A%2F%2Flocalhost%3APORT%2Fxmpp-websocket
//                  (host `localhost`: the hub's certificate names localhost)
//   PEER_JID       bare JID of the slixmpp peer (peer.py), e.g. romeo@localhost
//   EXPECTED_TEXT  the body the peer answers with; must appear in the chat
//   TEXT_TO_SEND   typed into Converse's message box and sent with Enter
//   --upload FILE  then sends FILE through Converse's file button (XEP-0363: a slot
//                  from the hub's upload service, a PUT from the page, the GET URL
//                  sent as the message and its XEP-0066 link)
//
// Exits 0 after printing the checks that passed; 1 after printing what was missing,
// the browser's console log, the HTTP responses and the WebSocket traffic; 2 on bad
// arguments. The whole run ends within --timeout seconds, whatever hangs.
//
// puppeteer-core comes from target/browser/node_modules (tests/interop/browser/install),
// or from $WRENHUB_BROWSER_DIR/node_modules; Chromium is Debian's /usr/bin/chromium
// ($WRENHUB_CHROMIUM overrides).
'use strict';

const path = require('path');

const browserDir = process.env.WRENHUB_BROWSER_DIR || path.join(__dirname, '..', '..', '..', 'target', 'browser');
let puppeteer;
try {
    puppeteer = require(path.join(browserDir, 'node_modules', 'puppeteer-core'));
} catch (e) {
    console.error(`run.js: cannot load puppeteer-core from ${browserDir}/node_modules ` +
        `(run tests/interop/browser/install): ${e.message}`);
    process.exit(2);
}

function usage(problem) {
    console.error(`run.js: ${problem}\nusage: node run.js URL PEER_JID EXPECTED_TEXT TEXT_TO_SEND ` +
        '[--timeout SECONDS] [--screenshot FILE.png] [--upload FILE]');
    process.exit(2);
}

const positional = [];
const options = { timeout: 40, screenshot: null, upload: null };
for (let i = 2; i < process.argv.length; i++) {
    const arg = process.argv[i];
    if (arg === '--timeout' || arg === '--screenshot' || arg === '--upload') {
        if (i + 1 >= process.argv.length) usage(`${arg} needs a value`);
        options[arg.slice(2)] = process.argv[++i];
    } else if (arg.startsWith('--')) {
        usage(`unknown option ${arg}`);
    } else {
        positional.push(arg);
    }
}
if (positional.length !== 4) usage('four arguments are required');
const [pageUrl, peerJid, expectedText, textToSend] = positional;
const timeoutMs = Number(options.timeout) * 1000;
if (!(timeoutMs > 0)) usage('--timeout must be a positive number of seconds');
if (new URL(pageUrl).hostname !== 'localhost') {
    console.error('run.js: warning: the page host is not localhost; the hub\'s certificate names localhost');
}

const started = Date.now();
const elapsed = () => `${((Date.now() - started) / 1000).toFixed(1)}s`;
const checks = [];     // what passed, in order
const consoleLog = []; // the browser's console, page errors, failed requests
const httpLog = [];    // every HTTP response: status, type, URL
const wsLog = [];      // the WebSocket handshakes and frames, from CDP
const wsSent = [];     // the payloads of the frames Chromium sent

let browser = null;
let page = null;
let finished = false;

function pass(text) {
    checks.push(text);
    console.log(`ok (${elapsed()}): ${text}`);
}

async function finish(code, problem) {
    if (finished) return;
    finished = true;
    if (problem) {
        console.error(`run.js: FAILED (${elapsed()}): ${problem}`);
        if (page) {
            try {
                const state = await withTimeout(page.evaluate(() => ({
                    status: document.documentElement.dataset.wrenhubStatus || '(no status: the page script did not run)',
                    controlbox: (document.querySelector('#controlbox') || {}).className,
                    feedback: Array.from(document.querySelectorAll('.conn-feedback, .login-info, .alert'))
                        .map((e) => e.textContent.trim()).filter((t) => t),
                    messages: Array.from(document.querySelectorAll('.chat-msg')).map((m) =>
                        `${m.dataset.from}: ${(m.querySelector('.chat-msg__text') || m).textContent.trim()}`),
                    events: window.wrenhubTest ? window.wrenhubTest.events : [],
                })), 3000);
                console.error('--- page state ---');
                console.error(JSON.stringify(state, null, 2));
            } catch (e) {
                console.error(`--- page state unavailable: ${e.message}`);
            }
        }
        console.error('--- checks passed before the failure ---');
        console.error(checks.join('\n') || '(none)');
        console.error('--- HTTP responses ---');
        console.error(httpLog.join('\n') || '(none)');
        console.error('--- WebSocket (CDP) ---');
        console.error(wsLog.join('\n') || '(none)');
        console.error('--- browser console ---');
        console.error(consoleLog.join('\n') || '(empty)');
    }
    if (page && options.screenshot) {
        try {
            await withTimeout(page.screenshot({ path: options.screenshot, fullPage: true }), 5000);
            console.error(`screenshot: ${options.screenshot}`);
        } catch (e) {
            console.error(`screenshot failed: ${e.message}`);
        }
    }
    if (!problem) {
        console.log(`run.js: OK: ${checks.length} checks in ${elapsed()}`);
    }
    if (browser) {
        const proc = browser.process();
        try {
            await withTimeout(browser.close(), 5000);
        } catch (e) {
            if (proc) proc.kill('SIGKILL');
        }
    }
    process.exit(code);
}

function withTimeout(promise, ms) {
    return Promise.race([promise, new Promise((_, reject) =>
        setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms).unref())]);
}

// The overall limit: whatever is stuck, print what we have and exit 1. A second,
// harder limit ends the process even if the report itself hangs.
let step = 'starting Chromium';
setTimeout(() => {
    setTimeout(() => process.exit(1), 8000).unref();
    finish(1, `timed out after ${options.timeout} s while ${step}`);
}, timeoutMs).unref();
// Keeps node alive until finish() exits (the timers above are unref'd).
const keepAlive = setInterval(() => {}, 1 << 30);

const remaining = () => Math.max(1000, timeoutMs - (Date.now() - started) - 1000);

// Waits until fn(arg) is truthy in the page; returns its value.
async function waitInPage(what, fn, arg) {
    step = `waiting for ${what}`;
    const handle = await page.waitForFunction(fn, { timeout: remaining(), polling: 100 }, arg);
    return handle.jsonValue();
}

async function main() {
    browser = await puppeteer.launch({
        executablePath: process.env.WRENHUB_CHROMIUM || '/usr/bin/chromium',
        headless: true,
        args: [
            '--no-sandbox',                // root, in a container: no user namespaces for the sandbox
            '--ignore-certificate-errors', // the hub's certificate is from its own local CA (data dir
                                           // tls/ca.pem), which this throwaway profile does not trust
            '--disable-dev-shm-usage',
            '--no-first-run',
            '--no-default-browser-check',
            '--disable-background-networking', // nothing but the hub: no component updates, no safe browsing
            '--disable-component-update',
            '--disable-sync',
            '--metrics-recording-only',
            '--window-size=1280,900',
        ],
        defaultViewport: { width: 1280, height: 900 },
        timeout: remaining(),
        protocolTimeout: remaining(),
    });
    pass(`Chromium ${await browser.version()} started`);
    page = await browser.newPage();

    page.on('console', (msg) => {
        const loc = msg.location();
        const where = loc && loc.url ? ` (${loc.url.replace(/\?.*/, '')}:${loc.lineNumber})` : '';
        consoleLog.push(`[${elapsed()}] console.${msg.type()}: ${msg.text()}${where}`);
    });
    page.on('pageerror', (err) => consoleLog.push(`[${elapsed()}] page error: ${err.message}`));
    page.on('requestfailed', (req) =>
        consoleLog.push(`[${elapsed()}] request failed: ${req.method()} ${req.url()}: ${req.failure() && req.failure().errorText}`));
    page.on('response', (res) => {
        const type = res.headers()['content-type'] || '(no Content-Type)';
        httpLog.push(`[${elapsed()}] ${res.status()} ${type} ${res.request().method()} ${res.url()}`);
    });

    const cdp = await page.createCDPSession();
    await cdp.send('Network.enable');
    const short = (s) => (s.length > 300 ? s.slice(0, 300) + `... (${s.length} chars)` : s);
    cdp.on('Network.webSocketCreated', (e) => wsLog.push(`[${elapsed()}] created ${e.url}`));
    cdp.on('Network.webSocketWillSendHandshakeRequest', (e) =>
        wsLog.push(`[${elapsed()}] handshake request: ${JSON.stringify(e.request.headers)}`));
    cdp.on('Network.webSocketHandshakeResponseReceived', (e) =>
        wsLog.push(`[${elapsed()}] handshake response: ${e.response.status} ${e.response.statusText} ` +
            JSON.stringify(e.response.headers)));
    cdp.on('Network.webSocketFrameSent', (e) => {
        wsSent.push(e.response.payloadData);
        wsLog.push(`[${elapsed()}] SEND ${short(e.response.payloadData)}`);
    });
    cdp.on('Network.webSocketFrameReceived', (e) => wsLog.push(`[${elapsed()}] RECV ${short(e.response.payloadData)}`));
    cdp.on('Network.webSocketFrameError', (e) => wsLog.push(`[${elapsed()}] frame error: ${e.errorMessage}`));
    cdp.on('Network.webSocketClosed', () => wsLog.push(`[${elapsed()}] closed`));

    // In the page: the newest live (not delayed: no history from MAM or offline storage)
    // message of the chat with `peer` on `side` ('me' or 'them') whose text includes
    // `text`, as {from, msgid}; or null.
    await page.evaluateOnNewDocument(() => {
        window.wrenhubFindMessage = (peer, text, side) => {
            const found = Array.from(document.querySelectorAll(`converse-chat[jid="${peer}"] .chat-msg:not(.delayed)`))
                .filter((msg) => {
                    const body = msg.querySelector(`.chat-msg__content--${side} .chat-msg__text`);
                    return body && body.textContent.includes(text);
                })
                .pop();
            return found ? { from: found.dataset.from || '(no data-from)', msgid: found.dataset.msgid } : null;
        };
    });

    step = `loading ${pageUrl}`;
    const response = await page.goto(pageUrl, { waitUntil: 'load', timeout: remaining() });
    if (!response || response.status() !== 200) {
        throw new Error(`the page answered ${response ? response.status() : 'nothing'}`);
    }
    const pageType = response.headers()['content-type'] || '';
    if (!pageType.startsWith('text/html')) throw new Error(`the page came as ${pageType || 'no Content-Type'}`);
    pass(`page loaded: 200 ${pageType}`);

    const assets = await page.evaluate(() => ({
        converse: typeof window.converse === 'object' || typeof window.converse === 'function',
        css: Array.from(document.styleSheets).some((s) => (s.href || '').endsWith('/dist/converse.min.css')
            && (() => { try { return s.cssRules.length > 0; } catch (e) { return false; } })()),
    }));
    if (!assets.converse) throw new Error('dist/converse.min.js did not define window.converse');
    if (!assets.css) throw new Error('dist/converse.min.css was not applied (no rules)');
    pass('Converse loaded from the hub: converse.min.js ran, converse.min.css applied');

    const status = await waitInPage('Converse to connect (data-wrenhub-status)', () => {
        const s = document.documentElement.dataset.wrenhubStatus;
        return ['connected', 'disconnected', 'error'].includes(s) && s;
    });
    if (status !== 'connected') throw new Error(`Converse did not connect: status ${status}`);
    const jid = await page.evaluate(() => window.wrenhubTest.api.connection.get().jid);
    const overWebSocket = await page.evaluate(() => window.wrenhubTest.api.connection.isType('websocket'));
    if (!overWebSocket) throw new Error('Converse connected, but not over WebSocket');
    pass(`Converse connected over WebSocket, bound as ${jid}`);
    const auth = wsSent.map((f) => /<(?:auth|authenticate)\b[^>]*\bmechanism=["']([^"']+)["']/.exec(f)).find((m) => m);
    if (!auth) throw new Error('no SASL <auth/> or <authenticate/> among the frames Chromium sent');
    pass(`logged in with SASL ${auth[1]}`);

    await waitInPage('the logged-in control box and roster', () =>
        document.querySelector('#controlbox:not(.logged-out) converse-roster'));
    pass('the control box shows the roster (logged in)');

    step = `opening a chat with ${peerJid}`;
    await page.evaluate((peer) => window.wrenhubTest.openChat(peer), peerJid);
    const textarea = `converse-chat[jid="${peerJid}"] textarea.chat-textarea`;
    step = `waiting for the chat's message box (${textarea})`;
    await page.waitForSelector(textarea, { visible: true, timeout: remaining() });
    pass(`chat with ${peerJid} open`);

    step = 'typing the message';
    await page.click(textarea);
    await page.type(textarea, textToSend);
    await page.keyboard.press('Enter');
    await waitInPage('our message in the chat', ({ peer, text }) => window.wrenhubFindMessage(peer, text, 'me'),
        { peer: peerJid, text: textToSend });
    pass(`sent ${JSON.stringify(textToSend)} (typed, Enter); it shows in the chat as ours`);

    const { from, msgid } = await waitInPage(`the peer's message ${JSON.stringify(expectedText)} in the chat`,
        ({ peer, text }) => window.wrenhubFindMessage(peer, text, 'them'), { peer: peerJid, text: expectedText });
    if (from.split('/')[0] !== peerJid) throw new Error(`the answer shows as from ${from}, not ${peerJid}`);
    pass(`received ${JSON.stringify(expectedText)} from ${from}; it shows in the chat as theirs`);

    // peer.py asked for a receipt (XEP-0184) and waits for it: closing the browser
    // before Converse has sent it would fail the peer.
    step = `waiting for Converse to send the receipt for message ${msgid}`;
    const receiptSent = () => wsSent.some((f) => f.includes('urn:xmpp:receipts') && f.includes('<received')
        && f.includes(`id="${msgid}"`));
    while (!receiptSent()) {
        if (Date.now() - started > timeoutMs - 1500) throw new Error(`Converse sent no receipt for message ${msgid}`);
        await new Promise((resolve) => setTimeout(resolve, 50));
    }
    pass(`Converse sent the delivery receipt (XEP-0184) for it over the WebSocket`);

    if (options.upload) {
        step = 'waiting for the file button (Converse found the upload service)';
        const input = await page.waitForSelector(`converse-chat[jid="${peerJid}"] input.fileupload`,
            { timeout: remaining() });
        await input.uploadFile(options.upload);
        step = 'waiting for the upload (PUT) and the message with its URL';
        const oob = () => wsSent.map((f) => f.includes('jabber:x:oob') && /<url>([^<]+)<\/url>/.exec(f))
            .find((m) => m);
        while (!oob()) {
            if (Date.now() - started > timeoutMs - 1500) throw new Error('Converse sent no message with a file link');
            await new Promise((resolve) => setTimeout(resolve, 50));
        }
        const put = httpLog.find((line) => / PUT https:/.test(line));
        if (!put || !/\] 201 /.test(put)) throw new Error(`the PUT was not answered 201: ${put || '(no PUT seen)'}`);
        pass(`uploaded ${path.basename(options.upload)}: ${put.replace(/^\[[^\]]*\] /, '')}`);
        pass(`sent its link (XEP-0066): ${oob()[1]}`);
    }
}

main().then(
    () => finish(0),
    (e) => finish(1, e && e.message ? e.message : String(e)),
).finally(() => clearInterval(keepAlive));
