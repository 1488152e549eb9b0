//! The HTTPS listener on the wire: the hub's page and CA, XEP-0156 host-meta,
//! XEP-0363 upload (slots over XMPP, PUT and GET over HTTPS with ranges), every
//! refusal's status, quotas and their XMPP errors, static files without path
//! traversal, and the request-head bounds.

mod common;
use common::*;
use std::time::Duration;

fn put(server: &Server, path: &str, content_type: &str, body: &[u8]) -> HttpResponse {
    let mut h = server.https();
    h.http(
        &format!(
            "PUT {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: {content_type}\r\nContent-Length: {}",
            body.len()
        ),
        body,
    )
}

fn get(server: &Server, path: &str, extra: &str) -> HttpResponse {
    let mut h = server.https();
    h.http(&format!("GET {path} HTTP/1.1\r\nHost: localhost{extra}"), b"")
}

#[test]
fn the_page_names_the_hub_and_offers_its_ca_and_host_meta_names_the_websocket_endpoint() {
    let server = Server::start();
    let mut h = server.https();
    // Several requests on one kept connection.
    let page = h.http("GET / HTTP/1.1\r\nHost: localhost", b"");
    assert_eq!(page.status, 200, "{page:?}");
    assert!(page.header("content-type").unwrap().starts_with("text/html"));
    let text = page.text();
    assert!(text.contains("<h1>localhost</h1>"), "{text}");
    assert!(text.contains("/ca.pem") && text.matches(':').count() > 31, "the CA's SHA-256 fingerprint: {text}");
    let ca = h.http("GET /ca.pem HTTP/1.1\r\nHost: localhost", b"");
    assert_eq!((ca.status, ca.body.clone()), (200, server.ca_pem()));
    let der = h.http("GET /ca.crt HTTP/1.1\r\nHost: localhost", b"");
    assert_eq!(der.status, 200);
    assert_eq!(der.body[0], 0x30, "DER starts with a SEQUENCE");
    let xrd = h.http("GET /.well-known/host-meta HTTP/1.1\r\nHost: localhost", b"");
    let port = server.http_port.unwrap();
    let endpoint = format!("wss://localhost:{port}/xmpp-websocket");
    assert!(xrd.text().contains(&format!("rel=\"urn:xmpp:alt-connections:websocket\" href=\"{endpoint}\"")), "{xrd:?}");
    assert_eq!(xrd.header("access-control-allow-origin"), Some("*"));
    let json = h.http("GET /.well-known/host-meta.json HTTP/1.1\r\nHost: localhost", b"");
    assert!(json.text().contains(&format!("\"href\":\"{endpoint}\"")), "{json:?}");
    let head = h.http("HEAD / HTTP/1.1\r\nHost: localhost", b"");
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty() && head.header("content-length").unwrap().parse::<usize>().unwrap() > 100);
    // Nothing else is served when no http_files_dir is set.
    let missing = h.http("GET /nothing HTTP/1.1\r\nHost: localhost", b"");
    assert_eq!(missing.status, 404);
    assert_eq!(missing.header("connection"), Some("close"));
    assert!(h.read_to_close(WAIT).ends_with("not found\n"));
}

#[test]
fn an_upload_slot_takes_one_put_and_the_file_reads_back_whole_and_in_ranges() {
    let server = Server::start();
    let (mut juliet, romeo) = server.juliet_and_romeo();
    // §3: the service, found through the server's items, says what it takes.
    juliet
        .send("<iq type='get' id='items' to='localhost'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>");
    juliet.read_until("id='items'", WAIT);
    let items = juliet.read_until("</iq>", WAIT);
    assert!(items.contains("jid='upload.localhost'"), "{items}");
    juliet.send(
        "<iq type='get' id='info' to='upload.localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>",
    );
    juliet.read_until("id='info'", WAIT);
    let info = juliet.read_until("</iq>", WAIT);
    assert!(info.contains("category='store'") && info.contains("type='file'"), "{info}");
    assert!(info.contains(&format!("var='{NS_UPLOAD}'")), "{info}");
    assert!(info.contains("<field var='max-file-size'><value>104857600</value>"), "{info}");

    let body: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let (put_path, get_path) = slot(&mut juliet, "holiday photo.jpg", body.len() as u64, "image/jpeg");
    assert!(get_path.ends_with("/holiday%20photo.jpg"), "{get_path}");
    let before = get(&server, &get_path, "");
    assert_eq!(before.status, 404, "nothing is served before the PUT");
    let stored = put(&server, &put_path, "image/jpeg", &body);
    assert_eq!(stored.status, 201, "{stored:?}");
    let again = put(&server, &put_path, "image/jpeg", &body);
    assert_eq!(again.status, 409, "a slot is used once: {again:?}");

    // Anyone with the URL reads it, over a kept connection.
    let mut h = server.https();
    let whole = h.http(&format!("GET {get_path} HTTP/1.1\r\nHost: localhost"), b"");
    assert_eq!(whole.status, 200);
    assert!(whole.body == body, "the file reads back as it was put");
    assert_eq!(whole.header("content-type"), Some("image/jpeg"));
    assert_eq!(whole.header("x-content-type-options"), Some("nosniff"));
    assert!(whole.header("content-security-policy").unwrap().contains("sandbox"));
    assert_eq!(whole.header("content-disposition"), Some("inline; filename*=UTF-8''holiday%20photo.jpg"));
    assert_eq!(whole.header("access-control-allow-origin"), Some("*"));
    assert_eq!(whole.header("accept-ranges"), Some("bytes"));
    let part = h.http(&format!("GET {get_path} HTTP/1.1\r\nHost: localhost\r\nRange: bytes=1000-1999"), b"");
    assert_eq!(part.status, 206);
    assert_eq!(part.header("content-range"), Some("bytes 1000-1999/100000"));
    assert!(part.body == body[1000..2000]);
    let tail = h.http(&format!("GET {get_path} HTTP/1.1\r\nHost: localhost\r\nRange: bytes=-10"), b"");
    assert!(tail.status == 206 && tail.body == body[body.len() - 10..]);
    let head = h.http(&format!("HEAD {get_path} HTTP/1.1\r\nHost: localhost"), b"");
    assert_eq!((head.status, head.header("content-length")), (200, Some("100000")));
    let beyond = h.http(&format!("GET {get_path} HTTP/1.1\r\nHost: localhost\r\nRange: bytes=100000-"), b"");
    assert_eq!((beyond.status, beyond.header("content-range")), (416, Some("bytes */100000")));

    // A type that could run script is a download, never a page of the hub's.
    let (put_path, get_path) = slot(&mut juliet, "page.html", 5, "text/html");
    assert_eq!(put(&server, &put_path, "text/html", b"<b>x").status, 400, "4 bytes for a slot of 5");
    assert_eq!(put(&server, &put_path, "text/html", b"<b>x</b>").status, 413, "8 bytes for a slot of 5");
    assert_eq!(put(&server, &put_path, "text/html", b"<b>x<").status, 201);
    let page = get(&server, &get_path, "");
    assert_eq!(page.header("content-disposition"), Some("attachment; filename*=UTF-8''page.html"));

    // The files outlive a restart.
    drop((juliet, romeo));
    let mut server = server;
    server.signal("TERM");
    server.wait_exit(WAIT).expect("stopped");
    let dir = std::mem::replace(&mut server.dir, tempfile::tempdir().unwrap());
    let server = Server::start_in(dir, "");
    let whole = get(&server, &get_path, "");
    assert_eq!((whole.status, whole.text()), (200, "<b>x<".to_string()));
}

#[test]
fn a_put_the_slot_did_not_grant_is_refused_with_its_status_and_stores_nothing() {
    let server = Server::start_with("upload_slot_timeout = 1\nhttp_body_timeout = 1\n");
    server.add_user("juliet", "pw");
    let mut juliet = server.login("juliet", "pw", "phone");
    let (put_path, get_path) = slot(&mut juliet, "a.txt", 10, "text/plain");
    // A changed size, id, or name is not what the hub signed.
    let bigger = put_path.replace(".10.", ".11.");
    assert_eq!(put(&server, &bigger, "text/plain", b"0123456789a").status, 403);
    let renamed = put_path.replace("/a.txt?", "/b.txt?");
    assert_eq!(put(&server, &renamed, "text/plain", b"0123456789").status, 403);
    let unsigned = put_path.split('?').next().unwrap().to_string();
    assert_eq!(put(&server, &unsigned, "text/plain", b"0123456789").status, 403);
    // No length, or chunked: 411.
    let mut h = server.https();
    let r = h.http(&format!("PUT {put_path} HTTP/1.1\r\nHost: localhost"), b"");
    assert_eq!(r.status, 411);
    let mut h = server.https();
    let r = h.http(&format!("PUT {put_path} HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked"), b"");
    assert_eq!(r.status, 411);
    // A body that stops half-way: 408 after http_body_timeout, and nothing kept.
    let mut h = server.https();
    let r = h.http(&format!("PUT {put_path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10"), b"01234");
    assert_eq!(r.status, 408, "{r:?}");
    assert_eq!(get(&server, &get_path, "").status, 404);
    let uploads: Vec<_> = std::fs::read_dir(server.data_dir().join("uploads")).unwrap().collect();
    assert!(uploads.is_empty(), "no part file is left: {uploads:?}");
    // The slot is still good for a whole PUT (it was never completed)...
    assert_eq!(put(&server, &put_path, "text/plain", b"0123456789").status, 201);
    // ...and a slot's time runs out (upload_slot_timeout = 1 s).
    let (late_put, _) = slot(&mut juliet, "late.txt", 1, "text/plain");
    std::thread::sleep(Duration::from_millis(2100));
    let late = put(&server, &late_put, "text/plain", b"x");
    assert_eq!(late.status, 403);
    assert!(late.text().contains("expired"), "{late:?}");
    // Not a slot at all.
    assert_eq!(put(&server, "/upload/short/x.txt?t=1", "text/plain", b"x").status, 404);
    let mut h = server.https();
    let r = h.http("POST /upload/x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0", b"");
    assert_eq!((r.status, r.header("allow")), (405, Some("GET, HEAD, PUT, OPTIONS")));
}

#[test]
fn a_file_too_large_and_a_full_quota_get_the_xeps_errors_and_deleting_the_account_frees_its_files() {
    let server = Server::start_with("upload_max_file_size = 10000\nupload_quota_per_account = 8192\n");
    server.add_user("juliet", "pw");
    server.add_user("romeo", "pw");
    let mut juliet = server.login("juliet", "pw", "phone");
    let too_large = ask_slot(&mut juliet, "big", "big.bin", 10001, "application/octet-stream");
    assert!(too_large.contains("type='modify'") && too_large.contains("<not-acceptable"), "{too_large}");
    assert!(too_large.contains(&format!("<file-too-large xmlns='{NS_UPLOAD}'><max-file-size>10000</max-file-size>")));
    // Two files of up to 4 KiB fill the quota of 8 KiB (counted in 4 KiB blocks).
    for name in ["one.txt", "two.txt"] {
        let (p, _) = slot(&mut juliet, name, 4000, "text/plain");
        assert_eq!(put(&server, &p, "text/plain", &[b'x'; 4000]).status, 201);
    }
    let full = ask_slot(&mut juliet, "full", "three.txt", 1, "text/plain");
    assert!(full.contains("type='wait'") && full.contains("<resource-constraint"), "{full}");
    assert!(full.contains(&format!("<retry xmlns='{NS_UPLOAD}' stamp='")), "when the oldest expires: {full}");
    // Romeo's quota is his own.
    let mut romeo = server.login("romeo", "pw", "laptop");
    let (p, romeo_get) = slot(&mut romeo, "r.txt", 3, "text/plain");
    assert_eq!(put(&server, &p, "text/plain", b"abc").status, 201);
    // Deleting an account deletes its files, and frees its quota.
    let (ok, out) = server.cli(&["user", "del", "juliet@localhost"], "");
    assert!(ok, "{out}");
    server.wait_for_log("account juliet@localhost: 2 uploaded file(s) removed", WAIT);
    assert_eq!(get(&server, &romeo_get, "").text(), "abc", "others' files stay");
    let left = std::fs::read_dir(server.data_dir().join("uploads")).unwrap().count();
    assert_eq!(left, 2, "romeo's file and its .meta");
}

#[test]
fn static_files_are_served_from_http_files_dir_and_no_path_leaves_it() {
    let dir = tempfile::tempdir().unwrap();
    let www = dir.path().join("www");
    std::fs::create_dir_all(www.join("app")).unwrap();
    std::fs::write(www.join("app/index.html"), "<p>web client</p>").unwrap();
    std::fs::write(www.join("app/main.js"), "console.log(1)").unwrap();
    std::fs::write(www.join(".hidden"), "secret").unwrap();
    std::fs::write(dir.path().join("wrenhub.toml.bak"), "outside").unwrap();
    let server = Server::start_in(dir, &format!("http_files_dir = '{}'\n", www.display()));
    let app = get(&server, "/app/", "");
    assert_eq!((app.status, app.text()), (200, "<p>web client</p>".to_string()));
    assert_eq!(app.header("content-type"), Some("text/html; charset=utf-8"));
    let js = get(&server, "/app/main.js", "");
    assert_eq!(js.header("content-type"), Some("text/javascript; charset=utf-8"));
    for bad in
        ["/../wrenhub.toml.bak", "/app/../../wrenhub.toml.bak", "/%2e%2e/wrenhub.toml.bak", "/.hidden", "/app/%00"]
    {
        let r = get(&server, bad, "");
        assert!(r.status == 404 || r.status == 400, "{bad}: {r:?}");
        assert!(!r.text().contains("outside") && !r.text().contains("secret"), "{bad}");
    }
}

#[test]
fn heads_past_their_bounds_malformed_or_too_slow_get_their_status_and_a_close() {
    let server = Server::start_with("http_max_head_bytes = 1024\nhttp_max_headers = 8\nhttp_header_timeout = 1\n");
    let mut h = server.https();
    let long = format!("GET /{} HTTP/1.1\r\nHost: localhost", "a".repeat(2000));
    assert_eq!(h.http(&long, b"").status, 431);
    h.read_to_close(WAIT);
    let mut h = server.https();
    let many: String = (0..10).map(|i| format!("\r\nX-{i}: y")).collect();
    assert_eq!(h.http(&format!("GET / HTTP/1.1{many}"), b"").status, 431);
    let mut h = server.https();
    assert_eq!(h.http("GET / HTTP/1.1\r\nBad Header: x", b"").status, 400);
    let mut h = server.https();
    assert_eq!(h.http("GET / HTTP/2.0", b"").status, 505);
    let mut h = server.https();
    assert_eq!(h.http("GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2", b"").status, 400);
    // A head that never ends: 408 after http_header_timeout.
    let mut h = server.https();
    h.send("GET / HTTP/1.1\r\nHost: local");
    let r = h.read_http(false);
    assert_eq!(r.status, 408);
    h.read_to_close(WAIT);
    // A connection that sends nothing is closed without an answer.
    let mut h = server.https();
    assert!(h.read_to_close(WAIT).is_empty());
    // The listener still serves.
    assert_eq!(get(&server, "/", "").status, 200);
}

#[test]
fn past_upload_days_the_hourly_job_removes_a_file_and_gives_its_room_back() {
    let config = "upload_days = 1\nupload_quota_per_account = 8192\n";
    let server = Server::start_with(config);
    server.add_user("juliet", "pw");
    let mut juliet = server.login("juliet", "pw", "phone");
    let (put_path, get_path) = slot(&mut juliet, "old.txt", 5000, "text/plain");
    assert_eq!(put(&server, &put_path, "text/plain", &[b'o'; 5000]).status, 201);
    let full = ask_slot(&mut juliet, "full", "more.txt", 1, "text/plain");
    assert!(full.contains("resource-constraint"), "8 KiB taken: {full}");
    drop(juliet);
    let later = server.restart_days_later(2, config);
    // The job runs at start, then hourly.
    later.wait_for_log("uploads: 1 file(s) past upload_days removed", WAIT);
    assert_eq!(get(&later, &get_path, "").status, 404);
    let mut juliet = later.login("juliet", "pw", "phone");
    let (put_path, _) = slot(&mut juliet, "new.txt", 5000, "text/plain");
    assert_eq!(put(&later, &put_path, "text/plain", &[b'n'; 5000]).status, 201, "the room came back");
}

#[test]
fn uploads_in_progress_count_in_the_buffer_budget_and_lose_nothing() {
    // The smallest budget: two PUTs in flight hold more than it (each a 16 KiB
    // buffer, the blocking pipe's and its head's), so a new connection is refused
    // until they end.
    let server = Server::start_with("max_buffer_memory = 65536\n");
    server.add_user("juliet", "pw");
    let mut juliet = server.login("juliet", "pw", "phone");
    let body: Vec<u8> = (0..100_000u32).map(|i| (i % 253) as u8).collect();
    let mut transfers = Vec::new();
    for i in 0..2 {
        let (put_path, get_path) = slot(&mut juliet, &format!("part{i}.bin"), body.len() as u64, "text/plain");
        transfers.push((start_put(&server, &put_path, "text/plain", &body, 1000), get_path));
    }
    let probe = || {
        let mut c = server.connect();
        c.send(HEADER);
        c.read_until_any(&["</stream:error>", "</stream:features>"])
    };
    wait_until("the transfers counted in the budget: a new connection refused", || {
        let got = probe();
        assert!(!got.contains("<resource-constraint ") || got.contains("max_buffer_memory"), "{got}");
        got.contains("<resource-constraint ")
    });
    // The transfers go on and complete; their memory comes back.
    for (h, _) in &mut transfers {
        h.send_bytes(&body[1000..]);
        assert_eq!(h.read_http(false).status, 201);
    }
    assert!(probe().contains("</stream:features>"), "served again once the transfers ended");
    for (_, get_path) in &transfers {
        let got = get(&server, get_path, "");
        assert!(got.status == 200 && got.body == body, "{get_path}: the file is whole");
    }
}
