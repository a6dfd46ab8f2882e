//! Cases from the kubelet's own tests (pkg/kubelet/network/dns/dns_test.go).

use std::net::IpAddr;
use std::path::Path;

use k8s_openapi::api::core::v1::Pod;
use serde_json::json;

use super::*;

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[test]
fn parses_as_the_kubelet() {
    // (text, nameservers, searches, options)
    type Case<'a> = (&'a str, &'a [&'a str], &'a [&'a str], &'a [&'a str]);
    let cases: &[Case] = &[
        ("", &[], &[], &[]),
        (" ", &[], &[], &[]),
        ("\n", &[], &[], &[]),
        ("\t\n\t", &[], &[], &[]),
        ("#comment\n", &[], &[], &[]),
        (" #comment\n", &[], &[], &[]),
        ("#comment\n#comment", &[], &[], &[]),
        ("#comment\nnameserver 1.2.3.4\nsearch", &["1.2.3.4"], &[], &[]),
        ("nameserver 1.2.3.4", &["1.2.3.4"], &[], &[]),
        (" nameserver 1.2.3.4", &["1.2.3.4"], &[], &[]),
        ("\tnameserver 1.2.3.4", &["1.2.3.4"], &[], &[]),
        ("nameserver\t1.2.3.4", &["1.2.3.4"], &[], &[]),
        ("nameserver \t 1.2.3.4", &["1.2.3.4"], &[], &[]),
        ("nameserver 1.2.3.4\nnameserver 5.6.7.8", &["1.2.3.4", "5.6.7.8"], &[], &[]),
        ("nameserver 1.2.3.4 #comment", &["1.2.3.4"], &[], &[]),
        ("search ", &[], &[], &[]),
        ("search foo", &[], &["foo"], &[]),
        ("search foo bar", &[], &["foo", "bar"], &[]),
        ("search foo. bar", &[], &["foo", "bar"], &[]),
        ("search foo bar bat\n", &[], &["foo", "bar", "bat"], &[]),
        ("search foo\nsearch bar", &[], &["bar"], &[]),
        ("nameserver 1.2.3.4\nsearch foo bar", &["1.2.3.4"], &["foo", "bar"], &[]),
        (
            "nameserver 1.2.3.4\nsearch foo\nnameserver 5.6.7.8\nsearch bar",
            &["1.2.3.4", "5.6.7.8"],
            &["bar"],
            &[],
        ),
        ("#comment\nnameserver 1.2.3.4\n#comment\nsearch foo\ncomment", &["1.2.3.4"], &["foo"], &[]),
        ("options ", &[], &[], &[]),
        ("options ndots:5 attempts:2", &[], &[], &["ndots:5", "attempts:2"]),
        ("options ndots:1\noptions ndots:5 attempts:3", &[], &[], &["ndots:5", "attempts:3"]),
        (
            "nameserver 1.2.3.4\nsearch foo\nnameserver 5.6.7.8\nsearch bar\noptions ndots:5 attempts:4",
            &["1.2.3.4", "5.6.7.8"],
            &["bar"],
            &["ndots:5", "attempts:4"],
        ),
    ];
    for (text, servers, searches, options) in cases {
        let conf = ResolvConf::parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        assert_eq!(conf.nameservers, strings(servers), "{text:?}");
        assert_eq!(conf.searches, strings(searches), "{text:?}");
        assert_eq!(conf.options, strings(options), "{text:?}");
    }
    for bad in ["#comment\nnameserver", "#comment\nnameserver\nsearch"] {
        assert_eq!(ResolvConf::parse(bad), Err(ResolvConfError), "{bad:?}");
    }
}

fn pod(namespace: &str, spec: serde_json::Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": "test_pod", "namespace": namespace, "uid": "1234"},
        "spec": spec,
    }))
    .unwrap()
}

fn dns_config() -> serde_json::Value {
    json!({
        "nameservers": ["10.0.0.11"],
        "searches": ["my.domain"],
        "options": [{"name": "ndots", "value": "3"}, {"name": "debug"}],
    })
}

/// TestGetPodDNSCustom: node resolv.conf `nameserver 8.8.8.8 / search
/// host.domain`, cluster DNS 10.0.0.10, domain kubernetes.io.
#[test]
fn forms_pod_dns_from_policy_and_dns_config() {
    let host = ResolvConf::parse("nameserver 8.8.8.8\nsearch host.domain\n").unwrap();
    let cluster_dns: [IpAddr; 1] = ["10.0.0.10".parse().unwrap()];
    let node = NodeDns {
        cluster_dns: &cluster_dns,
        cluster_domain: "kubernetes.io",
        host: Some(&host),
    };
    let cluster_searches = [
        "testNS.svc.kubernetes.io",
        "svc.kubernetes.io",
        "kubernetes.io",
        "host.domain",
        "my.domain",
    ];
    // (desc, hostNetwork, policy, dnsConfig, servers, searches, options)
    type Case<'a> = (
        &'a str,
        bool,
        &'a str,
        Option<serde_json::Value>,
        &'a [&'a str],
        &'a [&'a str],
        &'a [&'a str],
    );
    let cases: Vec<Case> = vec![
        (
            "None without dnsConfig is empty",
            false,
            "None",
            None,
            &[],
            &[],
            &[],
        ),
        (
            "None takes dnsConfig",
            false,
            "None",
            Some(
                json!({"nameservers": ["203.0.113.1"], "searches": ["my.domain", "second.domain"],
                        "options": [{"name": "ndots", "value": "3"}, {"name": "debug"}]}),
            ),
            &["203.0.113.1"],
            &["my.domain", "second.domain"],
            &["ndots:3", "debug"],
        ),
        (
            "ClusterFirst merges dnsConfig",
            false,
            "ClusterFirst",
            Some(dns_config()),
            &["10.0.0.10", "10.0.0.11"],
            &cluster_searches,
            &["ndots:3", "debug"],
        ),
        (
            "ClusterFirstWithHostNet on the host network is cluster DNS",
            true,
            "ClusterFirstWithHostNet",
            Some(dns_config()),
            &["10.0.0.10", "10.0.0.11"],
            &cluster_searches,
            &["ndots:3", "debug"],
        ),
        (
            "Default is the node's",
            false,
            "Default",
            Some(dns_config()),
            &["8.8.8.8", "10.0.0.11"],
            &["host.domain", "my.domain"],
            &["ndots:3", "debug"],
        ),
        (
            "ClusterFirst without dnsConfig",
            false,
            "ClusterFirst",
            None,
            &["10.0.0.10"],
            &[
                "testNS.svc.kubernetes.io",
                "svc.kubernetes.io",
                "kubernetes.io",
                "host.domain",
            ],
            &["ndots:5"],
        ),
        (
            "ClusterFirst on the host network falls back to the node's",
            true,
            "ClusterFirst",
            None,
            &["8.8.8.8"],
            &["host.domain"],
            &[],
        ),
    ];
    for (desc, host_network, policy, extra, servers, searches, options) in cases {
        let mut spec = json!({"containers": [], "dnsPolicy": policy, "hostNetwork": host_network});
        if let Some(extra) = extra {
            spec["dnsConfig"] = extra;
        }
        let dns = pod_dns(&pod("testNS", spec), &node);
        assert_eq!(dns.conf.nameservers, strings(servers), "{desc}");
        assert_eq!(dns.conf.searches, strings(searches), "{desc}");
        assert_eq!(dns.conf.options, strings(options), "{desc}");
        assert!(dns.events.is_empty(), "{desc}: {:?}", dns.events);
    }
}

/// testGetPodDNS: with no node resolv.conf, Default and host-network
/// ClusterFirst pods get `nameserver 127.0.0.1` and `search .`.
#[test]
fn without_a_node_resolv_conf_the_host_policy_is_localhost() {
    let cluster_dns: [IpAddr; 1] = ["203.0.113.1".parse().unwrap()];
    let node = NodeDns {
        cluster_dns: &cluster_dns,
        cluster_domain: "kubernetes.io",
        host: None,
    };
    for (policy, host_network, server, first_search) in [
        (
            "ClusterFirstWithHostNet",
            true,
            "203.0.113.1",
            "default.svc.kubernetes.io",
        ),
        ("ClusterFirst", true, "127.0.0.1", "."),
        (
            "ClusterFirst",
            false,
            "203.0.113.1",
            "default.svc.kubernetes.io",
        ),
        ("Default", true, "127.0.0.1", "."),
    ] {
        let spec = json!({"containers": [], "dnsPolicy": policy, "hostNetwork": host_network});
        let dns = pod_dns(&pod("default", spec), &node);
        assert_eq!(
            dns.conf.nameservers,
            vec![server],
            "{policy} {host_network}"
        );
        assert_eq!(
            dns.conf.searches[0], first_search,
            "{policy} {host_network}"
        );
    }
    // No policy at all is ClusterFirst (the API server's default).
    let dns = pod_dns(&pod("default", json!({"containers": []})), &node);
    assert_eq!(dns.conf.nameservers, vec!["203.0.113.1"]);
}

#[test]
fn cluster_first_without_cluster_dns_falls_back_with_events() {
    let host = ResolvConf::parse("nameserver 8.8.8.8\n").unwrap();
    let node = NodeDns {
        cluster_dns: &[],
        cluster_domain: "cluster.local",
        host: Some(&host),
    };
    let dns = pod_dns(&pod("default", json!({"containers": []})), &node);
    assert_eq!(dns.conf.nameservers, vec!["8.8.8.8"]);
    let message = "kubelet does not have ClusterDNS IP configured and cannot create Pod using \"ClusterFirst\" policy. Falling back to \"Default\" policy.";
    assert_eq!(
        dns.events,
        vec![
            DnsEvent {
                reason: "MissingClusterDNS",
                message: message.into(),
                on_node: true
            },
            DnsEvent {
                reason: "MissingClusterDNS",
                message: format!("pod: \"test_pod_default(1234)\". {message}"),
                on_node: false
            },
        ]
    );
}

/// TestFormDNSSearchFitsLimits (the expanded limits of Kubernetes >= 1.28).
#[test]
fn search_line_limits() {
    let numbered: Vec<String> = (4..=33).map(|i| i.to_string()).collect();
    let base = ["testNS.svc.TEST", "svc.TEST", "TEST"];
    let fits = |hosts: Vec<String>| {
        let mut conf = ResolvConf {
            searches: hosts,
            ..Default::default()
        };
        let mut events = Vec::new();
        fit_limits(&mut conf, &mut events);
        (
            conf.searches,
            events.into_iter().map(|e| e.message).collect::<Vec<_>>(),
        )
    };
    let line = |v: &[String]| {
        format!(
            "Search Line limits were exceeded, some search paths have been omitted, the applied search line is: {}",
            v.join(" ")
        )
    };

    let mut thirty_two = strings(&base);
    thirty_two.extend(numbered[..29].iter().cloned());
    assert_eq!(fits(thirty_two.clone()), (thirty_two.clone(), vec![]));
    let mut thirty_three = thirty_two.clone();
    thirty_three.push(numbered[29].clone());
    assert_eq!(
        fits(thirty_three),
        (thirty_two.clone(), vec![line(&thirty_two)])
    );

    let long = "B".repeat(256);
    let with_long = strings(&["testNS.svc.TEST", "svc.TEST", "TEST", "AAA", &long, "BBB"]);
    let kept = strings(&["testNS.svc.TEST", "svc.TEST", "TEST", "AAA", "BBB"]);
    assert_eq!(fits(with_long), (kept.clone(), vec![line(&kept)]));

    // 2048 = 128 + 127 * 15 + 15 separators.
    let mut chars_2048 = vec!["A".repeat(128)];
    chars_2048.extend(std::iter::repeat_n("A".repeat(127), 15));
    assert_eq!(fits(chars_2048.clone()), (chars_2048.clone(), vec![]));
    let mut chars_2050 = chars_2048.clone();
    chars_2050.push("B".into());
    assert_eq!(
        fits(chars_2050),
        (chars_2048.clone(), vec![line(&chars_2048)])
    );
}

/// TestFormDNSNameserversFitsLimits.
#[test]
fn nameserver_limit() {
    let mut conf = ResolvConf {
        nameservers: strings(&["127.0.0.1", "10.0.0.10", "8.8.8.8", "1.2.3.4"]),
        ..Default::default()
    };
    let mut events = Vec::new();
    fit_limits(&mut conf, &mut events);
    assert_eq!(
        conf.nameservers,
        strings(&["127.0.0.1", "10.0.0.10", "8.8.8.8"])
    );
    assert_eq!(events[0].reason, "DNSConfigForming");
    assert_eq!(
        events[0].message,
        "Nameserver limits were exceeded, some nameservers have been omitted, the applied nameserver line is: 127.0.0.1 10.0.0.10 8.8.8.8"
    );
}

/// TestMergeDNSOptions.
#[test]
fn options_merge_by_name() {
    let merged = |existing: &[&str], extra: serde_json::Value| {
        let mut conf = ResolvConf {
            options: strings(existing),
            ..Default::default()
        };
        append_dns_config(
            &mut conf,
            &serde_json::from_value(json!({"options": extra})).unwrap(),
        );
        conf.options
    };
    assert_eq!(
        merged(&["ndots:5", "debug"], json!([])),
        strings(&["ndots:5", "debug"])
    );
    assert_eq!(
        merged(
            &["ndots:5", "debug"],
            json!([{"name": "single-request"}, {"name": "attempts", "value": "3"}])
        ),
        strings(&["ndots:5", "debug", "single-request", "attempts:3"])
    );
    assert_eq!(
        merged(
            &["ndots:5", "debug"],
            json!([{"name": "ndots", "value": "3"}, {"name": "debug"}, {"name": "single-request"},
                   {"name": "attempts", "value": "3"}])
        ),
        strings(&["ndots:3", "debug", "single-request", "attempts:3"])
    );
}

#[test]
fn renders_as_containerd() {
    let conf = ResolvConf {
        nameservers: strings(&["8.8.8.8", "server.google.com"]),
        searches: strings(&["114.114.114.114"]),
        options: strings(&["timeout:1"]),
    };
    assert_eq!(
        conf.render(),
        "search 114.114.114.114\nnameserver 8.8.8.8\nnameserver server.google.com\noptions timeout:1\n"
    );
    assert_eq!(ResolvConf::default().render(), "");
}

#[test]
fn a_cluster_pod_gets_the_kubernetes_resolv_conf() {
    let host = ResolvConf::parse("nameserver 10.255.255.53\nsearch corp.example\n").unwrap();
    let cluster_dns: [IpAddr; 1] = ["10.43.0.10".parse().unwrap()];
    let node = NodeDns {
        cluster_dns: &cluster_dns,
        cluster_domain: "cluster.local",
        host: Some(&host),
    };
    let dns = pod_dns(&pod("shop", json!({"containers": []})), &node);
    assert_eq!(
        dns.conf.render(),
        "search shop.svc.cluster.local svc.cluster.local cluster.local corp.example\n\
         nameserver 10.43.0.10\n\
         options ndots:5\n"
    );
}

#[test]
fn upstreams_and_node_limit_warnings() {
    let conf =
        ResolvConf::parse("nameserver 10.0.0.2\nnameserver fe80::1\nnameserver bogus\n").unwrap();
    assert_eq!(
        conf.upstreams(),
        vec![
            "10.0.0.2:53".parse().unwrap(),
            "[fe80::1]:53".parse().unwrap()
        ]
    );
    let path = Path::new("/etc/resolv.conf");
    assert_eq!(conf.limits_warning(path, "cluster.local"), None);
    let many = ResolvConf {
        searches: (0..30).map(|i| format!("d{i}")).collect(),
        ..Default::default()
    };
    assert_eq!(
        many.limits_warning(path, "cluster.local").unwrap(),
        "Resolv.conf file '/etc/resolv.conf' contains search line consisting of more than 29 domains!"
    );
    assert_eq!(many.limits_warning(path, ""), None);
}
