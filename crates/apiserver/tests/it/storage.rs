//! Storage objects through the real kubectl: PersistentVolumes and claims
//! (core/v1) and storage.k8s.io/v1's kinds are stored, listed with
//! kubectl's columns, validated with Kubernetes' words, and readable in
//! protobuf (what the real kube-scheduler's informers ask for).

use crate::common;

use common::Harness;

const OBJECTS: &str = r#"
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: fast
  annotations: {storageclass.kubernetes.io/is-default-class: "true"}
provisioner: example.com/disk
parameters: {type: ssd}
---
apiVersion: v1
kind: PersistentVolume
metadata: {name: pv1}
spec:
  capacity: {storage: 1Gi}
  accessModes: [ReadWriteOnce, ReadOnlyMany]
  storageClassName: fast
  hostPath: {path: /srv/pv1}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data}
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: fast
  resources: {requests: {storage: 1Gi}}
---
apiVersion: storage.k8s.io/v1
kind: CSIDriver
metadata: {name: disk.example.com}
spec: {}
---
apiVersion: storage.k8s.io/v1
kind: CSINode
metadata: {name: node-1}
spec:
  drivers: [{name: disk.example.com, nodeID: n1}]
---
apiVersion: storage.k8s.io/v1
kind: CSIStorageCapacity
metadata: {name: cap1}
storageClassName: fast
capacity: 10Gi
---
apiVersion: storage.k8s.io/v1
kind: VolumeAttachment
metadata: {name: va1}
spec:
  attacher: disk.example.com
  nodeName: node-1
  source: {persistentVolumeName: pv1}
"#;

fn rows(out: String) -> Vec<Vec<String>> {
    out.lines()
        .map(|l| l.split_whitespace().map(String::from).collect())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_objects_are_served_with_kubectls_columns() {
    let h = Harness::start().await;
    let out = h.kubectl_stdin(&["apply", "-f", "-"], Some(OBJECTS)).await;
    assert_eq!(
        out.trim(),
        "storageclass.storage.k8s.io/fast created\n\
         persistentvolume/pv1 created\n\
         persistentvolumeclaim/data created\n\
         csidriver.storage.k8s.io/disk.example.com created\n\
         csinode.storage.k8s.io/node-1 created\n\
         csistoragecapacity.storage.k8s.io/cap1 created\n\
         volumeattachment.storage.k8s.io/va1 created"
    );

    let pv = rows(h.kubectl(&["get", "pv"]).await).concat();
    assert_eq!(
        &pv[..14],
        [
            "NAME",
            "CAPACITY",
            "ACCESS",
            "MODES",
            "RECLAIM",
            "POLICY",
            "STATUS",
            "CLAIM",
            "STORAGECLASS",
            "VOLUMEATTRIBUTESCLASS",
            "REASON",
            "AGE",
            "pv1",
            "1Gi"
        ]
    );
    assert_eq!(
        &pv[14..19],
        ["RWO,ROX", "Retain", "Pending", "fast", "<unset>"]
    );
    let pvc = rows(h.kubectl(&["get", "pvc", "-o", "wide"]).await);
    assert_eq!(
        pvc[0],
        [
            "NAME",
            "STATUS",
            "VOLUME",
            "CAPACITY",
            "ACCESS",
            "MODES",
            "STORAGECLASS",
            "VOLUMEATTRIBUTESCLASS",
            "AGE",
            "VOLUMEMODE"
        ]
    );
    assert_eq!(pvc[1][..4], ["data", "Pending", "fast", "<unset>"]);
    assert_eq!(pvc[1].last().map(String::as_str), Some("Filesystem"));
    let sc = rows(h.kubectl(&["get", "storageclass"]).await);
    assert_eq!(
        sc[0],
        [
            "NAME",
            "PROVISIONER",
            "RECLAIMPOLICY",
            "VOLUMEBINDINGMODE",
            "ALLOWVOLUMEEXPANSION",
            "AGE"
        ]
    );
    assert_eq!(
        sc[1][..6],
        [
            "fast",
            "(default)",
            "example.com/disk",
            "Delete",
            "Immediate",
            "false"
        ]
    );
    let drivers = rows(h.kubectl(&["get", "csidrivers"]).await);
    assert_eq!(
        drivers[1][..7],
        [
            "disk.example.com",
            "true",
            "false",
            "false",
            "<unset>",
            "false",
            "Persistent"
        ]
    );
    let nodes = rows(h.kubectl(&["get", "csinodes"]).await);
    assert_eq!(nodes[1][..2], ["node-1", "1"]);
    let caps = rows(h.kubectl(&["get", "csistoragecapacities"]).await);
    assert_eq!(caps[1], ["cap1", "fast", "10Gi"]);
    let vas = rows(h.kubectl(&["get", "volumeattachments"]).await);
    assert_eq!(
        vas[1][..5],
        ["va1", "disk.example.com", "pv1", "node-1", "false"]
    );

    let resources = h
        .kubectl(&["api-resources", "--api-group=storage.k8s.io"])
        .await;
    for r in [
        "storageclasses",
        "csidrivers",
        "csinodes",
        "csistoragecapacities",
        "volumeattachments",
    ] {
        assert!(resources.contains(r), "{r} missing: {resources}");
    }

    // Kubernetes' validation and immutability.
    let err = h
        .kubectl_fails(
            &[
                "patch",
                "storageclass",
                "fast",
                "-p",
                r#"{"parameters":{"type":"hdd"}}"#,
            ],
            None,
        )
        .await;
    assert!(
        err.contains("parameters: Forbidden: updates to parameters are forbidden."),
        "{err}"
    );
    let err = h
        .kubectl_fails(
            &[
                "patch",
                "pvc",
                "data",
                "-p",
                r#"{"spec":{"accessModes":["ReadWriteMany"]}}"#,
            ],
            None,
        )
        .await;
    assert!(
        err.contains("spec: Forbidden: spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims"),
        "{err}"
    );
    let bad = "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: bad}\nspec: {}\n";
    let err = h.kubectl_fails(&["apply", "-f", "-"], Some(bad)).await;
    assert!(
        err.contains("spec.accessModes: Required value: at least 1 access mode is required")
            && err.contains("spec.resources[storage]: Required value"),
        "{err}"
    );

    // What a protobuf client-go informer asks for.
    let out = h
        .kubectl(&[
            "get",
            "--raw",
            "/apis/storage.k8s.io/v1/csinodes?limit=500&resourceVersion=0",
        ])
        .await;
    assert!(out.contains("\"kind\":\"CSINodeList\""), "{out}");
}
