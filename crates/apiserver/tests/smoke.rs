mod common;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smoke() {
    let h = common::Harness::start().await;
    println!("{}", h.kubectl(&["get", "ns"]).await);
    println!(
        "{}",
        h.kubectl(&["run", "x", "--image=busybox", "--", "sleep", "1"])
            .await
    );
    println!("{}", h.kubectl(&["get", "pods", "-o", "wide"]).await);
}
