//! Runs the API server alone on a data dir, for poking at it with kubectl:
//! `cargo run -p orca-apiserver --example serve -- /tmp/orca-api [port]`.

use std::sync::Arc;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = std::path::PathBuf::from(args.next().ok_or("usage: serve DATA_DIR [PORT]")?);
    let port: u16 = args.next().map(|p| p.parse()).transpose()?.unwrap_or(0);
    let store =
        orca_store::sqlite::SqliteStore::open(&dir.join("db/state.db"), Default::default())?;
    let server = orca_apiserver::start(
        orca_apiserver::Config {
            data_dir: dir,
            bind_address: "127.0.0.1".into(),
            https_port: port,
            tls_sans: vec![],
            ..Default::default()
        },
        Arc::new(store),
    )
    .await?;
    println!(
        "listening on {}; kubeconfig {}",
        server.addr(),
        server.kubeconfig_path().display()
    );
    tokio::signal::ctrl_c().await?;
    server.shutdown().await;
    Ok(())
}
