//! Self-tests of the integration-test harness in `tests/support/` against the real parts: an
//! ephemeral PostgreSQL, the fake HTTP servers and the tiny HTTP client. (Tests of the `vigil` binary
//! live in the other `tests/*.rs` files.)

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use support::{FakeServer, PgServer, Response, client, wait_until};

#[test]
fn postgres_starts_answers_and_honours_settings() {
    let started = Instant::now();
    let pg = PgServer::builder().max_connections(17).start();
    eprintln!("PgServer started in {:?}", started.elapsed());

    assert_eq!(pg.psql("select 1"), "1");
    assert_eq!(pg.psql("SHOW max_connections"), "17");
    assert_eq!(pg.psql("SHOW fsync"), "off");
    assert_eq!(pg.psql("SHOW listen_addresses"), "127.0.0.1");
    assert!(pg.socket_dir().join(format!(".s.PGSQL.{}", pg.port())).exists());
    assert!(pg.is_accepting());
    assert!(pg.superuser_url().starts_with("postgres://postgres:"));

    // Several statements, CREATE DATABASE included (not allowed in a transaction block).
    let url = pg.create_user_db("gateway", "s3cret/p@ss");
    assert_eq!(pg.psql("select rolsuper from pg_roles where rolname = 'gateway'"), "f");
    assert!(url.contains("s3cret%2Fp%40ss"), "{url}");

    // Password authentication over TCP: the right password works, a wrong one is refused.
    let mut session = pg
        .session(&format!("{url}?application_name=harness"))
        .expect("session with the right password");
    assert_eq!(
        session.query("select current_user, current_database();"),
        "gateway|gateway"
    );
    let wrong = pg
        .session(&pg.url("gateway", "wrong", "gateway"))
        .err()
        .expect("wrong password must fail");
    assert!(wrong.contains("password authentication failed"), "{wrong}");
    let su = pg
        .session(&pg.superuser_url())
        .expect("superuser over TCP with its password");
    drop(su);

    assert!(
        pg.try_psql("select * from no_such_table")
            .unwrap_err()
            .contains("no_such_table")
    );
}

#[test]
fn postgres_sessions_fill_connection_slots() {
    let pg = PgServer::builder()
        .max_connections(5)
        .superuser_reserved_connections(2)
        .start();
    let url = pg.create_user_db("app", "pw");
    let mut held = pg.hold_connections(&format!("{url}?application_name=holder"), 3);
    assert_eq!(pg.client_connections(), 3);
    assert_eq!(
        pg.psql("select count(*) from pg_stat_activity where application_name = 'holder'"),
        "3"
    );

    // The three usable slots are taken: a fourth client is refused (SQLSTATE 53300).
    let refused = pg
        .session(&url)
        .err()
        .expect("a fourth non-superuser connection must be refused");
    assert!(
        refused.contains("reserved for") || refused.contains("too many clients"),
        "{refused}"
    );

    // States a postgres check counts.
    held[0].send("BEGIN; SELECT 1;");
    held[1].send("SELECT pg_sleep(60);");
    wait_until(
        Duration::from_secs(5),
        "idle in transaction and active sessions",
        || {
            pg.psql(
                "select count(*) filter (where state = 'idle in transaction') || ',' || \
             count(*) filter (where state = 'active' and query like '%pg_sleep%') \
             from pg_stat_activity where application_name = 'holder'",
            ) == "1,1"
        },
    );
    drop(held);
    wait_until(Duration::from_secs(5), "the sessions to disconnect", || {
        pg.client_connections() == 0
    });
}

#[test]
fn postgres_faults_kill_stop_restart() {
    let pg = PgServer::start();
    pg.psql("create table t (x int); insert into t values (42)");
    let old_pid = pg.pid().expect("postmaster.pid");

    let killed = Instant::now();
    pg.kill();
    assert!(!pg.is_listening(), "port still accepts after kill");
    assert!(!pg.is_accepting());
    eprintln!("kill -> port refuses in {:?}", killed.elapsed());

    let restarted = Instant::now();
    pg.restart();
    eprintln!("restart after kill (crash recovery) in {:?}", restarted.elapsed());
    assert!(pg.is_accepting());
    assert_ne!(pg.pid(), Some(old_pid));
    assert_eq!(pg.psql("select x from t"), "42");

    pg.stop();
    assert!(!pg.is_running());
    wait_until(Duration::from_secs(5), "the port to refuse after stop", || {
        !pg.is_listening()
    });
    pg.start_again();
    assert_eq!(pg.psql("select 1"), "1");

    pg.stop_immediate();
    assert!(!pg.is_listening());
    pg.start_again();
    assert!(pg.is_accepting());
}

#[test]
fn postgres_drop_leaves_no_process_and_no_directory() {
    let pg = PgServer::start();
    let data_dir = pg.data_dir().to_path_buf();
    let pid = pg.pid().expect("postmaster.pid");
    let pgrep = |pattern: &str| {
        let out = Command::new("pgrep")
            .arg("-f")
            .arg(pattern)
            .output()
            .expect("run pgrep");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(pgrep(&data_dir.to_string_lossy()), pid.to_string());

    drop(pg);
    assert_eq!(
        pgrep(&data_dir.to_string_lossy()),
        "",
        "a postgres process survived the drop"
    );
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}/cmdline")).exists() || {
            // An unreaped zombie has an empty command line.
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .unwrap_or_default()
                .is_empty()
        }
    );
    assert!(!data_dir.exists(), "the data directory survived the drop");
}

#[test]
fn postgres_drop_after_kill_cleans_up() {
    let pg = PgServer::start();
    let data_dir = pg.data_dir().to_path_buf();
    pg.kill();
    drop(pg);
    assert!(!data_dir.exists());
}

#[test]
fn fake_server_answers_what_it_is_told() {
    let server = FakeServer::start(|req| match req.path.as_str() {
        "/ok" => Response::text(200, "ok").with_header("x-test", "1"),
        "/json" => Response::json(201, &serde_json::json!({"keys": [1, 2]})),
        "/slow" => Response::text(200, "late").with_delay(Duration::from_millis(300)),
        "/echo" => Response::text(200, format!("{} {:?} {:?}", req.method, req.query, req.bearer_token())),
        "/abort" => Response::abort(),
        _ => Response::text(404, "nope"),
    });

    let ok = client::get(server.addr(), "/ok");
    assert_eq!(
        (ok.status, ok.body.as_str(), ok.header("X-Test")),
        (200, "ok", Some("1"))
    );
    let json = client::get(server.addr(), "/json");
    assert_eq!(json.status, 201);
    assert_eq!(json.json()["keys"][1], 2);
    assert_eq!(client::get(server.addr(), "/missing").status, 404);

    let echo = client::request(server.addr(), "GET", "/echo?a=1", &[("Authorization", "Bearer tok")]);
    assert_eq!(echo.body, r#"GET Some("a=1") Some("tok")"#);
    let head = client::request(server.addr(), "HEAD", "/ok", &[]);
    assert_eq!((head.status, head.body.as_str()), (200, ""));

    let started = Instant::now();
    let slow = client::get(server.addr(), "/slow");
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "answered after {:?}",
        started.elapsed()
    );
    assert_eq!(slow.body, "late");

    assert!(client::try_request(server.addr(), "GET", "/abort", &[], &[]).is_err());

    let posted = client::try_request(server.addr(), "POST", "/echo", &[], b"payload").unwrap();
    assert_eq!(posted.status, 200);
    assert_eq!(server.last_request().unwrap().body, b"payload");
    assert_eq!(server.requests(), 8);
    assert!(server.url("/x").starts_with("http://127.0.0.1:"));
}

#[test]
fn fake_server_handler_can_change_at_run_time() {
    let server = FakeServer::fixed(Response::text(200, "up"));
    assert_eq!(client::get(server.addr(), "/").status, 200);
    server.set_response(Response::text(503, "down"));
    assert_eq!(client::get(server.addr(), "/").body, "down");
    server.set_handler(|_| panic!("boom"));
    let panicked = client::get(server.addr(), "/");
    assert_eq!(panicked.status, 500);
    assert!(panicked.body.contains("boom"));
    assert_eq!(server.requests(), 3);

    let addr = server.addr();
    drop(server);
    assert!(
        TcpStream::connect_timeout(&addr, Duration::from_millis(300)).is_err(),
        "port still open after drop"
    );
}

#[test]
fn hanging_server_accepts_and_never_answers() {
    let server = FakeServer::hanging();
    let mut stream = TcpStream::connect(server.addr()).expect("the hanging server accepts");
    stream.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    stream.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 16];
    match stream.read(&mut buf) {
        Ok(n) => panic!("the hanging server answered {n} bytes"),
        Err(e) => assert!(
            matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut),
            "unexpected error {e}"
        ),
    }
    assert!(started.elapsed() >= Duration::from_millis(290));
    wait_until(Duration::from_secs(1), "the connection to be counted", || {
        server.connections() == 1
    });
    assert_eq!(server.requests(), 0);
}

#[test]
fn client_parses_chunked_and_sized_bodies() {
    let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n\
                    5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\n\r\n";
    let r = client::parse_response(chunked, false).unwrap();
    assert_eq!(
        (r.status, r.body.as_str(), r.content_type()),
        (200, "hello, world", Some("text/plain"))
    );

    let sized = b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 2\r\n\r\nokTRAILING";
    let r = client::parse_response(sized, false).unwrap();
    assert_eq!((r.status, r.body.as_str()), (503, "ok"));

    let head = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n";
    assert_eq!(client::parse_response(head, true).unwrap().body, "");
    assert!(client::parse_response(b"garbage", false).is_err());
}

#[test]
fn free_port_is_refused() {
    let addr = support::refused_addr();
    assert!(TcpStream::connect_timeout(&addr, Duration::from_millis(300)).is_err());
}

#[test]
fn postgres_failed_start_panics_with_the_server_log() {
    let panic = std::panic::catch_unwind(|| PgServer::builder().setting("shared_buffers", "'lots'").start())
        .expect_err("a bad setting must fail the start");
    let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(message.contains("cannot start PostgreSQL"), "{message}");
    assert!(message.contains("shared_buffers"), "{message}");
}
