//! The PostgreSQL harness (`util::pg`) on its own: a row written before a
//! restart or a kill is read back after it, on the same URL, and every way a
//! test ends stops its server.

use std::net::TcpListener;

use postgres::{Client, NoTls};

use crate::util::pg::Pg;

fn connect(pg: &Pg) -> Client {
    Client::connect(&pg.url(), NoTls).expect("connect to the test cluster")
}

fn urls(db: &mut Client) -> Vec<String> {
    db.query("SELECT url FROM jobs ORDER BY id", &[])
        .expect("read jobs")
        .iter()
        .map(|row| row.get(0))
        .collect()
}

fn port_is_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

#[test]
fn rows_survive_a_restart_and_a_kill() {
    let mut pg = Pg::start();
    let (port, dir) = (pg.port(), pg.dir().to_owned());

    let mut db = connect(&pg);
    db.batch_execute("CREATE TABLE jobs (id int PRIMARY KEY, url text NOT NULL)")
        .expect("create table");
    db.execute("INSERT INTO jobs VALUES ($1, $2)", &[&1, &"http://a/1"])
        .expect("insert");
    drop(db);

    pg.restart();
    assert_eq!(pg.port(), port, "a restart keeps the port");
    let mut db = connect(&pg);
    assert_eq!(urls(&mut db), ["http://a/1"]);
    db.execute("INSERT INTO jobs VALUES ($1, $2)", &[&2, &"http://a/2"])
        .expect("insert");

    pg.kill();
    assert!(port_is_free(port), "port {port} still taken after kill");
    assert!(db.is_valid(std::time::Duration::from_secs(1)).is_err());
    pg.start_again();
    let mut db = connect(&pg);
    assert_eq!(urls(&mut db), ["http://a/1", "http://a/2"]);
    drop(db);

    pg.stop();
    assert!(port_is_free(port), "port {port} still taken after stop");
    assert!(!dir.exists(), "{} left behind", dir.display());
}

#[test]
fn a_panicking_test_stops_its_server() {
    let (tx, rx) = std::sync::mpsc::channel();
    let test = std::thread::spawn(move || {
        let pg = Pg::start();
        let mut db = connect(&pg);
        db.batch_execute("SELECT 1").expect("query");
        tx.send(pg.port()).unwrap();
        panic!("a failing test (on purpose)");
    });
    assert!(test.join().is_err());
    let port = rx.recv().expect("the test started its server");
    assert!(port_is_free(port), "port {port} still taken");
}
