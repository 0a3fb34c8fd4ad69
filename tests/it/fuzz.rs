//! Replays the fuzz targets' invariants over the seed inputs and over every
//! input a fuzzer ever found a bug with (`tests/data/fuzz-regressions/`,
//! one file per finding, named for the target it crashed).

use std::path::Path;

fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries {
        let path = e.unwrap().path();
        if path.is_file() && path.extension().is_none_or(|x| x != "md") {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            out.push((name, std::fs::read(&path).unwrap()));
        }
    }
    out
}

#[test]
fn seeds_hold_every_invariant() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut n = 0;
    for dir in [
        "tests/data/rfc4475",
        "tests/data/rfc4475/non-rfc",
        "benches/data",
    ] {
        for (_, data) in files(&root.join(dir)) {
            tandem::fuzzing::message(&data);
            // Through the proxy core, from each kind of sender.
            for sender in [4u8, 1, 2, 3] {
                let mut input = vec![sender];
                input.extend_from_slice(&data);
                tandem::fuzzing::proxy(&input);
            }
            // Every line is also fed to the value decoders.
            for line in data.split(|&c| c == b'\n') {
                tandem::fuzzing::uri(line);
                tandem::fuzzing::auth(line);
            }
            n += 1;
        }
    }
    assert!(n >= 54, "only {n} seed files found");
}

#[test]
fn fuzzer_findings_stay_fixed() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/fuzz-regressions");
    for (name, data) in files(&dir) {
        match name.split('-').next().unwrap() {
            "parse_message" => tandem::fuzzing::message(&data),
            "parse_uri" => tandem::fuzzing::uri(&data),
            "parse_auth" => tandem::fuzzing::auth(&data),
            "proxy" => tandem::fuzzing::proxy(&data),
            other => panic!("{name}: unknown target {other}"),
        }
    }
}
