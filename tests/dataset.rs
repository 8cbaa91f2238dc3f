//! Dataset inputs, naming and content checks.

use std::path::PathBuf;

use haul_origin::{expected, Config, Origin};

use crate::util::{assert_exit, read, run, Scratch};

/// The Fluent Python flags dataset, a fixture in the repository (see its
/// SOURCE.md).
pub fn flags_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/flags")
}

async fn flags_origin() -> Origin {
    Origin::start(Config {
        static_root: Some(flags_dir()),
        ..Config::default()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accept_checks_the_bytes_not_the_label() {
    let origin = flags_origin().await;
    let s = Scratch::new();
    let out = s.out();
    let o = run(&[
        &origin.url("/static/cn/cn.gif"),
        &origin.url("/html/photo.jpg"),
        &origin.url("/file/noise.jpg"),
        "-o",
        out.to_str().unwrap(),
        "--accept",
        "image/*",
        "--report",
        s.path("r.jsonl").to_str().unwrap(),
    ])
    .await;
    assert_exit(&o, 1);
    assert_eq!(s.out_files(), vec!["cn.gif"]);
    assert_eq!(
        read(out.join("cn.gif")),
        read(flags_dir().join("cn/cn.gif"))
    );
    let m = s.manifest("r.jsonl");
    let error = |name: &str| {
        m.iter()
            .find(|m| m["url"].as_str().unwrap().ends_with(name))
            .unwrap()["error"]
            .clone()
    };
    assert_eq!(error("photo.jpg"), "unexpected content: text/html");
    assert_eq!(
        error("noise.jpg"),
        "unexpected content: application/octet-stream"
    );
    origin.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn size_limits_abort_early_whatever_the_server_says() {
    let origin = Origin::start(Config::default()).await.unwrap();
    let s = Scratch::new();
    let out = s.out();
    let o = run(&[
        // No Content-Length: the limit is found while streaming.
        &origin.url("/chunked/unbounded.bin?size=50000000"),
        // A declared length over the limit fails before the body.
        &origin.url("/file/declared.bin?size=3000000"),
        &origin.url("/file/tiny.bin?size=10"),
        &origin.url("/file/fine.bin?size=500000"),
        "-o",
        out.to_str().unwrap(),
        "--max-size",
        "1M",
        "--min-size",
        "1k",
        "--report",
        s.path("r.jsonl").to_str().unwrap(),
    ])
    .await;
    assert_exit(&o, 1);
    assert_eq!(s.out_files(), vec!["fine.bin"]);
    assert_eq!(
        read(out.join("fine.bin")),
        expected("/file/fine.bin?size=500000")
    );
    // The unbounded body was cut off near the limit, not read to its end.
    assert!(
        origin.stats().bytes_sent < 20_000_000,
        "{:?}",
        origin.stats()
    );
    let m = s.manifest("r.jsonl");
    let reasons: Vec<&str> = m.iter().filter_map(|m| m["reason"].as_str()).collect();
    assert_eq!(
        reasons.iter().filter(|r| **r == "too large").count(),
        2,
        "{m:?}"
    );
    assert_eq!(
        reasons.iter().filter(|r| **r == "too small").count(),
        1,
        "{m:?}"
    );
    origin.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn url_patterns_expand_in_arguments_and_lists() {
    let origin = Origin::start(Config::default()).await.unwrap();
    let s = Scratch::new();
    let list = s.list("urls.txt", &[origin.url("/file/{a,b}{01..03}.bin")]);
    let out = s.out();
    let o = run(&[
        &origin.url("/file/arg{1..3}.bin"),
        "-i",
        list.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ])
    .await;
    assert_exit(&o, 0);
    assert_eq!(
        s.out_files(),
        vec![
            "a01.bin", "a02.bin", "a03.bin", "arg1.bin", "arg2.bin", "arg3.bin", "b01.bin",
            "b02.bin", "b03.bin"
        ]
    );
    origin.stop().await;
}

/// The two-letter codes of the flags dataset.
pub fn flag_codes() -> Vec<String> {
    let mut codes: Vec<String> = std::fs::read_dir(flags_dir())
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    codes.sort();
    codes
}

/// `{meta.country}` names a file after its metadata document.
pub fn country(cc: &str) -> String {
    let meta: serde_json::Value =
        serde_json::from_slice(&read(flags_dir().join(cc).join("metadata.json"))).unwrap();
    meta["country"].as_str().unwrap().replace(' ', "_")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_from_metadata_documents() {
    let origin = flags_origin().await;
    let s = Scratch::new();
    let codes = flag_codes();
    assert_eq!(codes.len(), 194);
    let mut urls: Vec<String> = codes
        .iter()
        .map(|cc| origin.url(&format!("/static/{cc}/{cc}.gif")))
        .collect();
    urls.push(origin.url("/static/zz/zz.gif"));
    let list = s.list("urls.txt", &urls);
    let out = s.out();
    let meta = origin.url("/{path}/metadata.json");
    let o = s
        .fetch(
            &list,
            &[
                "--meta-url",
                &meta,
                "--name",
                r#"{stem|upper}-{meta.country|replace(" ","_")}.{ext}"#,
            ],
        )
        .await;
    assert_exit(&o, 1);
    for cc in &codes {
        let name = format!("{}-{}.gif", cc.to_uppercase(), country(cc));
        assert_eq!(
            read(out.join(&name)),
            read(flags_dir().join(cc).join(format!("{cc}.gif"))),
            "{name}"
        );
    }
    assert!(out.join("CN-China.gif").is_file());
    assert!(out.join("US-United_States_of_America.gif").is_file());
    assert_eq!(s.out_files().len(), 194);
    let m = s.manifest("r.jsonl");
    let zz = m
        .iter()
        .find(|m| m["url"].as_str().unwrap().contains("/zz/"))
        .unwrap();
    assert_eq!(zz["status"], "failed");
    assert_eq!(zz["reason"], "metadata: HTTP 404 Not Found");
    let cn = m.iter().find(|m| m["path"] == "CN-China.gif").unwrap();
    assert_eq!(cn["meta"]["iso_cc"], "CN");
    origin.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn name_templates_make_directories_and_detect_extensions() {
    let origin = flags_origin().await;
    let s = Scratch::new();
    let out = s.out();
    let o = run(&[
        // A GIF behind a URL without an extension: {ext} is detected.
        &origin.url("/redirect?to=%2Fstatic%2Fbr%2Fbr.gif"),
        &origin.url("/static/fr/fr.gif"),
        "-o",
        out.to_str().unwrap(),
        "--name",
        "{host}/{n}-{stem}.{ext}",
    ])
    .await;
    assert_exit(&o, 0);
    assert_eq!(
        s.out_files(),
        vec!["127.0.0.1/1-redirect.gif", "127.0.0.1/2-fr.gif"]
    );
    // Two URLs whose template names collide both arrive.
    let s2 = Scratch::new();
    let out2 = s2.out();
    let o = run(&[
        &origin.url("/file/a/x.bin"),
        &origin.url("/file/b/x.bin"),
        "-o",
        out2.to_str().unwrap(),
        "--name",
        "../{name}",
    ])
    .await;
    assert_exit(&o, 0);
    assert_eq!(s2.out_files(), vec!["x-1.bin", "x.bin"]);
    assert!(s2.files().iter().all(|f| f.starts_with("out/")));
    origin.stop().await;
}

/// A CSV shaped like the seed's `weibo.csv`: 10 columns, the 9th holding a
/// Python list literal of image URLs (empty, one, several), text columns
/// with commas and quotes, and a few malformed rows.
fn weibo_csv(origin: &Origin) -> (String, Vec<String>) {
    let u = |n: &str| origin.url(&format!("/file/weibo/{n}.jpg"));
    let mut csv = String::from("id,user,text,time,reposts,comments,likes,source,pics,topic\n");
    let mut want = Vec::new();
    let rows: Vec<Vec<String>> = vec![
        vec![u("a1"), u("a2")],
        vec![],
        vec![u("b1")],
        vec![u("c1"), u("c2"), u("c3")],
        vec![u("a1")], // the same image twice: fetched once
    ];
    for (i, pics) in rows.iter().enumerate() {
        let list = format!(
            "[{}]",
            pics.iter()
                .enumerate()
                .map(|(j, p)| if j % 2 == 0 {
                    format!("'{p}'")
                } else {
                    format!("\"\"{p}\"\"")
                })
                .collect::<Vec<_>>()
                .join(", ")
        );
        csv.push_str(&format!(
            "{i},user{i},\"text, with \"\"quotes\"\" and commas\",2020-01-0{i},1,2,3,web,\"{list}\",t{i}\n"
        ));
        for p in pics {
            if !want.contains(p) {
                want.push(p.clone());
            }
        }
    }
    // Line 7: a broken quote; line 8: too few fields; line 9: good again.
    csv.push_str("97,userx,\"unterminated text,2020,1,2,3,web,\"['x']\",t\n");
    csv.push_str("98,short,row\n");
    csv.push_str(&format!(
        "99,user9,fine,2020,1,2,3,web,\"['{}']\",t9\n",
        u("d1")
    ));
    want.push(u("d1"));
    (csv, want)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seed_shaped_csv_fetches_every_listed_url_once() {
    let origin = Origin::start(Config::default()).await.unwrap();
    let s = Scratch::new();
    let (csv, want) = weibo_csv(&origin);
    let input = s.path("weibo.csv");
    std::fs::write(&input, csv).unwrap();
    let out = s.out();
    let failed = s.path("failed.csv");
    let o = s
        .fetch(
            &input,
            &[
                "--failed",
                failed.to_str().unwrap(),
                "--keep-columns",
                "id,user",
            ],
        )
        .await;
    assert_exit(&o, 1);
    for url in &want {
        let path = url.split_once(&format!("{}", origin.port())).unwrap().1;
        let name = path.rsplit('/').next().unwrap();
        assert_eq!(read(out.join(name)), expected(path), "{url}");
        assert_eq!(origin.requests(path), 1, "{url} fetched more than once");
    }
    assert_eq!(s.out_files().len(), want.len());
    let m = s.manifest("r.jsonl");
    let bad: Vec<(u64, &str)> = m
        .iter()
        .filter(|m| m["reason"] == "bad input")
        .map(|m| (m["line"].as_u64().unwrap(), m["error"].as_str().unwrap()))
        .collect();
    assert_eq!(bad.len(), 2, "{m:?}");
    assert!(bad.iter().any(|(l, _)| *l == 7), "{bad:?}");
    assert!(bad.iter().any(|(l, _)| *l == 8), "{bad:?}");
    assert!(bad.iter().all(|(_, e)| e.contains("weibo.csv:")), "{bad:?}");
    let b1 = m.iter().find(|m| m["path"] == "b1.jpg").unwrap();
    assert_eq!(b1["columns"]["user"], "user2");
    // The failed list is a CSV of the input's own rows, header first.
    let failed = std::fs::read_to_string(failed).unwrap();
    let lines: Vec<&str> = failed.lines().collect();
    assert_eq!(
        lines[0],
        "id,user,text,time,reposts,comments,likes,source,pics,topic"
    );
    assert_eq!(lines.len(), 3, "{failed}");
    assert!(
        lines.iter().any(|l| l.starts_with("98,short,row")),
        "{failed}"
    );
    origin.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flags_from_a_csv_of_codes_end_to_end() {
    let origin = flags_origin().await;
    let s = Scratch::new();
    let mut codes = flag_codes();
    codes.extend(["zz".to_string(), "qq".to_string()]);
    let csv = std::iter::once("cc,note".to_string())
        .chain(
            codes
                .iter()
                .map(|c| format!("{},row {c}", c.to_uppercase())),
        )
        .collect::<Vec<_>>()
        .join("\n");
    let input = s.path("codes.csv");
    std::fs::write(&input, csv).unwrap();
    let out = s.out();
    let base = origin.url("/static");
    let url = format!("{base}/{{col.cc|lower}}/{{col.cc|lower}}.gif");
    let meta = format!("{base}/{{col.cc|lower}}/metadata.json");
    let o = s
        .fetch(
            &input,
            &[
                "--url",
                &url,
                "--meta-url",
                &meta,
                "--name",
                r#"{col.cc|upper}-{meta.country|replace(" ","_")}.gif"#,
            ],
        )
        .await;
    assert_exit(&o, 1);
    for cc in flag_codes() {
        let name = format!("{}-{}.gif", cc.to_uppercase(), country(&cc));
        assert_eq!(
            read(out.join(&name)),
            read(flags_dir().join(&cc).join(format!("{cc}.gif"))),
            "{name}"
        );
    }
    assert!(out.join("CN-China.gif").is_file());
    assert_eq!(s.out_files().len(), 194);
    let m = s.manifest("r.jsonl");
    let failed: Vec<&serde_json::Value> = m.iter().filter(|m| m["status"] == "failed").collect();
    assert_eq!(failed.len(), 2);
    assert!(failed.iter().all(|f| f["http_status"] == 404), "{failed:?}");
    origin.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jsonl_and_parquet_inputs_keep_their_columns() {
    let origin = Origin::start(Config::default()).await.unwrap();
    let s = Scratch::new();
    // JSONL with the URL at a dotted path, and a line that is not JSON.
    let jsonl = [
        format!(
            r#"{{"id": 1, "caption": "a cat", "image": {{"url": "{}"}}}}"#,
            origin.url("/file/j1.png")
        ),
        "not json".to_string(),
        format!(
            r#"{{"id": 2, "caption": "a dog", "image": {{"url": "{}"}}}}"#,
            origin.url("/file/j2.png")
        ),
    ]
    .join("\n");
    let input = s.path("items.jsonl");
    std::fs::write(&input, jsonl).unwrap();
    let out = s.out();
    let o = run(&[
        "-i",
        input.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--column",
        "image.url",
        "--keep-columns",
        "id,caption",
        "--report",
        s.path("j.csv").to_str().unwrap(),
    ])
    .await;
    assert_exit(&o, 1);
    assert_eq!(s.out_files(), vec!["j1.png", "j2.png"]);
    // A CSV manifest, by its extension, with the kept columns last.
    let csv = std::fs::read_to_string(s.path("j.csv")).unwrap();
    let mut lines = csv.lines();
    assert!(
        lines.next().unwrap().ends_with(",reason,note,id,caption"),
        "{csv}"
    );
    assert!(csv.lines().any(|l| l.ends_with(",1,a cat")), "{csv}");
    assert!(csv.contains("items.jsonl:2"), "{csv}");

    // Parquet: two row groups, read as a stream.
    let pq = s.path("items.parquet");
    write_parquet(
        &pq,
        &[
            (&[(10, origin.url("/file/p1.bin"), "first")]),
            (&[
                (11, origin.url("/file/p2.bin"), "second"),
                (12, origin.url("/file/p3.bin"), "third"),
            ]),
        ],
    );
    let out2 = s.path("out2");
    let o = run(&[
        "-i",
        pq.to_str().unwrap(),
        "-o",
        out2.to_str().unwrap(),
        "--keep-columns",
        "id,label",
        "--report",
        s.path("p.jsonl").to_str().unwrap(),
    ])
    .await;
    assert_exit(&o, 0);
    let m = s.manifest("p.jsonl");
    assert_eq!(m.len(), 3);
    let p3 = m.iter().find(|m| m["path"] == "p3.bin").unwrap();
    assert_eq!(p3["columns"]["label"], "third");
    assert_eq!(p3["columns"]["id"], "12");
    assert_eq!(read(out2.join("p2.bin")), expected("/file/p2.bin"));
    origin.stop().await;
}

/// Writes a parquet file with columns id, url, label; one row group per
/// slice.
fn write_parquet(path: &std::path::Path, groups: &[&[(i64, String, &str)]]) {
    use parquet::data_type::{ByteArray, ByteArrayType, Int64Type};
    use parquet::file::properties::WriterProperties;
    use parquet::file::writer::SerializedFileWriter;
    use parquet::schema::parser::parse_message_type;
    use std::sync::Arc;
    let schema = Arc::new(
        parse_message_type(
            "message rows { REQUIRED INT64 id; REQUIRED BINARY url (UTF8); REQUIRED BINARY label (UTF8); }",
        )
        .unwrap(),
    );
    let file = std::fs::File::create(path).unwrap();
    let mut writer =
        SerializedFileWriter::new(file, schema, Arc::new(WriterProperties::builder().build()))
            .unwrap();
    for group in groups {
        let mut rg = writer.next_row_group().unwrap();
        let ids: Vec<i64> = group.iter().map(|r| r.0).collect();
        let mut col = rg.next_column().unwrap().unwrap();
        col.typed::<Int64Type>()
            .write_batch(&ids, None, None)
            .unwrap();
        col.close().unwrap();
        for field in [1, 2] {
            let vals: Vec<ByteArray> = group
                .iter()
                .map(|r| ByteArray::from(if field == 1 { r.1.as_str() } else { r.2 }))
                .collect();
            let mut col = rg.next_column().unwrap().unwrap();
            col.typed::<ByteArrayType>()
                .write_batch(&vals, None, None)
                .unwrap();
            col.close().unwrap();
        }
        rg.close().unwrap();
    }
    writer.close().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checksums_from_a_column_are_verified() {
    let origin = Origin::start(Config::default()).await.unwrap();
    let s = Scratch::new();
    let good: String = ring::digest::digest(&ring::digest::SHA256, &expected("/file/good.bin"))
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let csv = format!(
        "url,sha256\n{},{good}\n{},{}\n",
        origin.url("/file/good.bin"),
        origin.url("/file/bad.bin"),
        "0".repeat(64)
    );
    let input = s.path("sums.csv");
    std::fs::write(&input, csv).unwrap();
    let o = s.fetch(&input, &["--checksum-column", "sha256"]).await;
    assert_exit(&o, 1);
    assert_eq!(s.out_files(), vec!["good.bin"]);
    let m = s.manifest("r.jsonl");
    let bad = m
        .iter()
        .find(|m| m["url"].as_str().unwrap().ends_with("bad.bin"))
        .unwrap();
    assert_eq!(bad["reason"], "checksum mismatch");
    origin.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_byte_order_mark_is_not_part_of_the_first_line_or_column() {
    let origin = Origin::start(Config::default()).await.unwrap();
    let s = Scratch::new();
    let list = s.path("bom.txt");
    let text = format!(
        "\u{feff}{}\n{}\n",
        origin.url("/file/a"),
        origin.url("/file/b")
    );
    std::fs::write(&list, text).unwrap();
    let o = s.fetch(&list, &[]).await;
    assert_exit(&o, 0);
    assert_eq!(s.out_files(), vec!["a", "b"]);
    let csv = s.path("bom.csv");
    let text = format!("\u{feff}url,id\n{},1\n", origin.url("/file/c"));
    std::fs::write(&csv, text).unwrap();
    let o = s.fetch(&csv, &["--column", "url"]).await;
    assert_exit(&o, 0);
    assert_eq!(s.out_files(), vec!["a", "b", "c"]);
    origin.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_row_gets_a_manifest_line_even_without_a_url() {
    let origin = Origin::start(Config::default()).await.unwrap();
    let s = Scratch::new();
    let csv = s.path("rows.csv");
    let text = format!(
        "id,url\n1,{}\n2,\n3,{}\n",
        origin.url("/file/a"),
        origin.url("/file/b")
    );
    std::fs::write(&csv, text).unwrap();
    let o = s.fetch(&csv, &[]).await;
    assert_exit(&o, 0);
    let m = s.manifest("r.jsonl");
    assert_eq!(m.len(), 3, "{m:?}");
    let empty = m.iter().find(|l| l["line"] == 3).unwrap();
    assert_eq!(empty["status"], "skipped");
    assert_eq!(empty["reason"], "no url");
    let jsonl = s.path("rows.jsonl");
    let text = format!(
        "{{\"url\": \"{}\"}}\n{{\"other\": 1}}\n",
        origin.url("/file/c")
    );
    std::fs::write(&jsonl, text).unwrap();
    let o = s.fetch(&jsonl, &["--column", "url"]).await;
    assert_exit(&o, 0);
    let m = s.manifest("r.jsonl");
    assert_eq!(m.len(), 2, "{m:?}");
    let empty = m.iter().find(|l| l["line"] == 2).unwrap();
    assert_eq!(empty["reason"], "no url");
    origin.stop().await;
}
