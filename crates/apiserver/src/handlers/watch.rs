use super::*;

// Watch

fn watch_line(kind: &str, obj: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(obj.len() + 32);
    b.put_slice(b"{\"type\":\"");
    b.put_slice(kind.as_bytes());
    b.put_slice(b"\",\"object\":");
    b.put_slice(obj);
    b.put_slice(b"}\n");
    b.freeze()
}

struct WatchOut {
    def: &'static ResourceDef,
    table: bool,
    /// Events as length-framed protobuf WatchEvents instead of JSON lines.
    protobuf: bool,
    include: IncludeObject,
    filter: Filter,
    prefix: String,
    tx: tokio::sync::mpsc::Sender<Bytes>,
    last_rev: Revision,
}

impl WatchOut {
    /// Sends one event if it passes the filter; false when the client left.
    async fn event(&mut self, ev: &CacheEvent) -> bool {
        if ev.rev <= self.last_rev {
            return true;
        }
        self.last_rev = ev.rev;
        if !ev.obj.key.starts_with(&self.prefix) {
            return true;
        }
        let cur = self.filter.matches(&ev.obj);
        let kind = match ev.kind {
            EventType::Added if cur => EventType::Added,
            EventType::Deleted if cur => EventType::Deleted,
            EventType::Modified => {
                let prev = ev
                    .prev
                    .as_ref()
                    .is_some_and(|p| self.filter.matches_meta(p));
                match (prev, cur) {
                    (true, true) => EventType::Modified,
                    (false, true) => EventType::Added,
                    (true, false) => EventType::Deleted,
                    (false, false) => return true,
                }
            }
            _ => return true,
        };
        self.send(kind.as_str(), &ev.obj.bytes).await
    }

    /// One event in the stream's wire.
    fn frame(&self, kind: &str, obj: &[u8]) -> Bytes {
        if self.protobuf {
            let v: Value = serde_json::from_slice(obj).unwrap_or(Value::Null);
            match crate::protobuf::watch_frame(kind, &v) {
                Ok(b) => return b,
                Err(why) => tracing::warn!(%why, "watch event not encodable as protobuf"),
            }
        }
        watch_line(kind, obj)
    }

    async fn send(&self, kind: &str, obj: &Bytes) -> bool {
        let line = if self.protobuf {
            self.frame(kind, obj)
        } else if self.table {
            let v: Value = serde_json::from_slice(obj).unwrap_or(Value::Null);
            let t = table(self.def, std::slice::from_ref(&v), self.include);
            watch_line(kind, t.to_string().as_bytes())
        } else {
            watch_line(kind, obj)
        };
        self.tx.send(line).await.is_ok()
    }

    async fn bookmark(&self, rev: Revision, initial_end: bool) -> bool {
        let mut meta = json!({"resourceVersion": rev.to_string()});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let obj =
            json!({"kind": self.def.kind, "apiVersion": self.def.api_version(), "metadata": meta});
        self.tx
            .send(self.frame("BOOKMARK", obj.to_string().as_bytes()))
            .await
            .is_ok()
    }

    async fn error(&self, e: &ApiError) {
        let _ = self
            .tx
            .send(self.frame("ERROR", e.to_status().to_string().as_bytes()))
            .await;
    }
}

pub async fn watch(ctx: &Ctx<'_>) -> Result<Response<Body>, ApiError> {
    check_accept(ctx.headers)?;
    let filter = Filter::from_query(ctx)?;
    let rv = parse_rv(ctx.query)?;
    let timeout: Option<u64> = parse_num(ctx.query, "timeoutSeconds")?;
    let bookmarks = matches!(q1(ctx.query, "allowWatchBookmarks"), Some("true" | "1"));
    let send_initial = match q1(ctx.query, "sendInitialEvents") {
        Some("true") => Some(true),
        Some("false") => Some(false),
        _ => None,
    };
    if send_initial.is_some() && !bookmarks {
        return Err(ApiError::new(
            422,
            "Invalid",
            "sendInitialEvents is forbidden for watch unless allowWatchBookmarks=true",
        ));
    }
    let prefix = ctx.def.ns_prefix(ctx.namespace);
    let rc = ctx.state.cache.resource(ctx.def).clone();
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(256);
    let table = wants_table(ctx.headers);
    let protobuf = !table
        && crate::protobuf::negotiate(&accept(ctx.headers)).first()
            == Some(crate::protobuf::Wire::Protobuf);
    let mut out = WatchOut {
        def: ctx.def,
        table,
        protobuf,
        include: include_object(ctx.query)?,
        filter,
        prefix: prefix.clone(),
        tx,
        last_rev: 0,
    };
    // RV unset or "0" starts with the current state as ADDED events.
    let initial = match (rv, send_initial) {
        (_, Some(b)) => b,
        (None | Some(0), None) => true,
        _ => false,
    };
    let store = ctx.state.store.clone();
    let def = ctx.def;
    tokio::spawn(async move {
        let deadline = timeout.map(|s| tokio::time::Instant::now() + Duration::from_secs(s.max(1)));
        let sub = if initial {
            let (objs, at, sub) = rc.snapshot_and_subscribe(&prefix);
            for o in objs.iter().filter(|o| out.filter.matches(o)) {
                if !out.send("ADDED", &o.bytes).await {
                    return;
                }
            }
            out.last_rev = at;
            if send_initial == Some(true) && !out.bookmark(at, true).await {
                return;
            }
            sub
        } else {
            // No initial state asked for and no resourceVersion: start now.
            let from = match rv {
                None | Some(0) => rc.revision(),
                Some(r) => r,
            };
            out.last_rev = from;
            match rc.subscribe(from) {
                Some(s) => s,
                None => {
                    // Older than the cache window: replay from the store.
                    watch_store(&mut out, &*store, def, &prefix, from, deadline).await;
                    return;
                }
            }
        };
        for ev in &sub.backlog {
            if !out.event(ev).await {
                return;
            }
        }
        let mut rx = sub.rx;
        let mut tick = tokio::time::interval(Duration::from_secs(30));
        tick.tick().await;
        loop {
            let sleep_until = deadline
                .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(86_400));
            tokio::select! {
                r = rx.recv() => match r {
                    Ok(ev) => if !out.event(&ev).await { return },
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(skipped = n, "watcher fell behind; closing its watch so it resumes");
                        return;
                    }
                    Err(_) => return,
                },
                _ = tick.tick() => {
                    if bookmarks && !out.bookmark(out.last_rev.max(rc.revision()), false).await { return }
                    if out.tx.is_closed() { return }
                }
                _ = tokio::time::sleep_until(sleep_until) => return,
            }
        }
    });
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx)
        .map(|b| Ok::<_, crate::server::BoxError>(hyper::body::Frame::data(b)));
    let body = http_body_util::BodyExt::boxed_unsync(http_body_util::StreamBody::new(stream));
    Ok(Response::builder()
        .status(200)
        .header(
            header::CONTENT_TYPE,
            if protobuf {
                crate::protobuf::WATCH_CONTENT_TYPE
            } else {
                "application/json"
            },
        )
        .header(header::CACHE_CONTROL, "no-cache, private")
        .body(body)
        .unwrap_or_else(|_| Response::new(crate::server::full(Bytes::new()))))
}

async fn watch_store(
    out: &mut WatchOut,
    store: &dyn orca_store::Store,
    def: &'static ResourceDef,
    prefix: &str,
    from: Revision,
    deadline: Option<tokio::time::Instant>,
) {
    let mut stream = match store.watch(prefix, from).await {
        Ok(s) => s,
        Err(e) => {
            out.error(&ApiError::from(e)).await;
            return;
        }
    };
    let build = |key: &str, value: &[u8], rev| cache::build(def, key, value, rev);
    loop {
        let next = match deadline {
            Some(d) => match tokio::time::timeout_at(d, stream.next()).await {
                Ok(n) => n,
                Err(_) => return,
            },
            None => stream.next().await,
        };
        let ev = match next {
            Some(Ok(ev)) => ev,
            Some(Err(e)) => {
                out.error(&ApiError::from(e)).await;
                return;
            }
            None => return,
        };
        let ce = match ev {
            orca_store::WatchEvent::Put { kv, prev } => {
                let Some(obj) = build(&kv.key, &kv.value, kv.mod_revision) else {
                    continue;
                };
                CacheEvent {
                    kind: if prev.is_some() {
                        EventType::Modified
                    } else {
                        EventType::Added
                    },
                    rev: kv.mod_revision,
                    obj,
                    prev: prev
                        .and_then(|p| build(&p.key, &p.value, p.mod_revision))
                        .map(|o| o.meta.clone()),
                }
            }
            orca_store::WatchEvent::Delete { prev, revision } => {
                let Some(obj) = build(&prev.key, &prev.value, revision) else {
                    continue;
                };
                CacheEvent {
                    kind: EventType::Deleted,
                    rev: revision,
                    obj,
                    prev: None,
                }
            }
        };
        if !out.event(&ce).await {
            return;
        }
    }
}
