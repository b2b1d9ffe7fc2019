//! Decrypt throughput of this codec vs `openssl enc -aes-256-ctr` on the same bytes, in the same run.
//!
//!     cargo run --release -p etlt --example decrypt_bench [-- SIZE_MIB [REPEATS]]
//!
//! Both sides read a file and write a file in the same temporary directory; the reported figure is
//! the median of REPEATS runs. The in-memory keystream rate and the PBKDF2 cost are reported apart.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use etlt::{Key, Keystream};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn mib_per_s(bytes: usize, t: Duration) -> f64 {
    bytes as f64 / (1 << 20) as f64 / t.as_secs_f64()
}

fn sha_of(path: &Path) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(std::fs::read(path).unwrap()).to_vec()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let size_mib: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(256);
    let repeats: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(5);
    let size = size_mib << 20;
    let dir = tempfile::tempdir().unwrap();

    // PBKDF2 once per model open: report it on its own.
    let t = Instant::now();
    let key = Key::derive("nvidia_tlt").unwrap();
    let kdf = t.elapsed();

    // A UFF-looking payload (the streaming check reads the first bytes), pseudo-random after that.
    let mut payload = vec![0u8; size];
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for chunk in payload.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    payload[..5].copy_from_slice(&etlt::payload::UFF_MAGIC);
    let nonce = [0x42u8; 16];
    let etlt_path = dir.path().join("model.etlt");
    let raw_path = dir.path().join("model.ciphertext");
    let plain = etlt::encode_bytes(&payload, "input_1", &key, Some(nonce)).unwrap();
    std::fs::write(&etlt_path, &plain).unwrap();
    std::fs::write(&raw_path, &plain[4 + 7 + 16..]).unwrap();
    drop(plain);

    let ours_out = dir.path().join("ours.uff");
    let openssl_out = dir.path().join("openssl.uff");
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for _ in 0..repeats {
        let t = Instant::now();
        let reader = std::io::BufReader::new(std::fs::File::open(&etlt_path).unwrap());
        let mut writer = std::fs::File::create(&ours_out).unwrap();
        etlt::decrypt_stream(reader, &mut writer, &key).unwrap();
        drop(writer);
        ours.push(t.elapsed());

        let t = Instant::now();
        let status = Command::new("openssl")
            .args(["enc", "-d", "-aes-256-ctr", "-nosalt", "-K"])
            .arg(hex::encode(key.as_bytes()))
            .arg("-iv")
            .arg(hex::encode(nonce))
            .arg("-in")
            .arg(&raw_path)
            .arg("-out")
            .arg(&openssl_out)
            .status()
            .expect("openssl must be installed (scripts/setup.sh installs it)");
        assert!(status.success());
        theirs.push(t.elapsed());
    }
    assert_eq!(
        sha_of(&ours_out),
        sha_of(&openssl_out),
        "both decrypt to the same bytes"
    );

    // Keystream alone, in memory: one thread and all threads.
    let mut buf = payload;
    let in_memory = |threads: usize, buf: &mut [u8]| {
        median(
            (0..repeats)
                .map(|_| {
                    let t = Instant::now();
                    Keystream::new(&key, &nonce)
                        .with_threads(threads)
                        .apply(buf);
                    t.elapsed()
                })
                .collect(),
        )
    };
    let one = in_memory(1, &mut buf);
    let all_threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let all = in_memory(all_threads, &mut buf);

    // OpenSSL's own in-memory rate, one thread, same 1 MiB blocks as its enc loop would see at best.
    let speed = Command::new("openssl")
        .args([
            "speed",
            "-evp",
            "aes-256-ctr",
            "-bytes",
            "1048576",
            "-seconds",
            "2",
        ])
        .output()
        .ok()
        .and_then(|o| {
            let text = String::from_utf8_lossy(&o.stdout).into_owned();
            let line = text
                .lines()
                .rev()
                .find(|l| l.starts_with("AES-256-CTR"))?
                .to_owned();
            // "AES-256-CTR    7865368.58k": thousands of bytes per second.
            let k = line
                .split_whitespace()
                .last()?
                .trim_end_matches('k')
                .parse::<f64>()
                .ok()?;
            Some(k * 1000.0 / (1 << 20) as f64)
        });

    let (ours, theirs) = (median(ours), median(theirs));
    println!("payload: {size_mib} MiB, median of {repeats} runs, file -> file");
    println!(
        "etlt decrypt_stream:        {:8.1} MiB/s",
        mib_per_s(size, ours)
    );
    println!(
        "openssl enc -aes-256-ctr:   {:8.1} MiB/s",
        mib_per_s(size, theirs)
    );
    println!(
        "ratio (ours / openssl):     {:8.2}x",
        theirs.as_secs_f64() / ours.as_secs_f64()
    );
    println!(
        "keystream in memory, 1 thread:  {:8.1} MiB/s",
        mib_per_s(size, one)
    );
    println!(
        "keystream in memory, {all_threads} threads: {:8.1} MiB/s",
        mib_per_s(size, all)
    );
    if let Some(openssl) = speed {
        println!("openssl speed aes-256-ctr, 1 thread: {openssl:8.1} MiB/s");
        println!(
            "in-memory ratio vs openssl speed: 1 thread {:.2}x, {all_threads} threads {:.2}x",
            mib_per_s(size, one) / openssl,
            mib_per_s(size, all) / openssl
        );
    }
    println!(
        "PBKDF2-HMAC-SHA256 100000 iterations (once per model): {:.1} ms",
        kdf.as_secs_f64() * 1e3
    );
}
