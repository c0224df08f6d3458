//! Networking (`--net`): each mode between namespaces the test makes (see `netlab`), both
//! directions, forwards from upstream and from the host itself, IPv4 and IPv6, the same
//! address and MAC after a reboot and a restart, spoofing dropped, nothing left behind.

use std::fs;
use std::time::Duration;

use integration_tests::netlab::{HOST4, HOST6, NetLab, UPSTREAM4, UPSTREAM6};
use integration_tests::{Finished, Sandbox, kill, secs};

/// A busybox guest with a web page at /www, for cradle run in the lab.
fn web_guest(test: &str, lab: &NetLab) -> Sandbox {
    let sb = Sandbox::busybox(test).in_lab(lab);
    sb.write(
        "/www/index.html",
        &format!("hello from {}\n", sb.name),
        0o644,
    );
    sb
}

fn serve(sb: &Sandbox) {
    let httpd = sb.exec(&["httpd", "-p", "80", "-h", "/www"]);
    assert_eq!(httpd.code(), Some(0), "{httpd:?}");
}

fn stop(sb: &Sandbox) {
    let stopped = sb.run_cradle(&["stop", &sb.name], secs(60));
    assert_eq!(stopped.code(), Some(0), "{stopped:?}");
}

/// What the guest holds, from `status --json`.
fn network(sb: &Sandbox) -> serde_json::Value {
    sb.status()["network"].clone()
}

fn addresses(net: &serde_json::Value) -> Vec<String> {
    net["addresses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().split('/').next().unwrap().to_owned())
        .collect()
}

/// The mark of a guest's elements in cradle's nftables sets and maps, as nft lists them.
fn elements_of(sb: &Sandbox) -> String {
    format!("comment \"{}\"", sb.name)
}

/// Asserts that nothing networking made for the guest is left in the lab's host
/// namespace or in the leases: no link, no element of cradle's ruleset, no lease naming
/// it. The link goes with the guest's network namespace, which the kernel tears down in
/// the background after the guest's last process: a few milliseconds are allowed.
fn assert_no_network_left(sb: &Sandbox, lab: &NetLab) {
    let deadline = std::time::Instant::now() + secs(5);
    loop {
        let links = lab.host_ip("-br link");
        let rules = lab.host_nft("list ruleset");
        let left = links.contains("ve-") || rules.contains(&elements_of(sb));
        if !left {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} left links or elements:\n{links}\n{rules}",
            sb.name
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    for entry in fs::read_dir("/run/cradle-net").unwrap().flatten() {
        let text = fs::read_to_string(entry.path()).unwrap_or_default();
        assert!(
            text.lines().next() != Some(sb.name.as_str()),
            "the lease {} of {} is left",
            entry.path().display(),
            sb.name
        );
    }
    sb.assert_clean();
}

#[test]
fn a_nat_guest_reaches_upstream_and_its_forwards_reach_it_from_upstream_and_the_host() {
    let lab = NetLab::new("nat");
    let sb = web_guest("net-nat", &lab);
    let guard = sb.start_detached(&["--net", "nat", "--port", "8080:80"], secs(30));
    serve(&sb);
    let page = format!("hello from {}\n", sb.name);
    // from upstream, at the host's address, both families
    assert_eq!(
        NetLab::http_get(&lab.upstream, &format!("{HOST4}:8080")),
        Ok(page.clone())
    );
    assert_eq!(
        NetLab::http_get(&lab.upstream, &format!("[{HOST6}]:8080")),
        Ok(page.clone())
    );
    // from the host itself, at its own address
    assert_eq!(
        NetLab::http_get(&lab.host, &format!("{HOST4}:8080")),
        Ok(page.clone())
    );
    // out: upstream sees the host's address (masquerade)
    let peer = NetLab::echo_peer(&lab.upstream, &format!("{UPSTREAM4}:9000"), 1);
    let out = sb.exec(&["sh", "-c", &format!("nc {UPSTREAM4} 9000 </dev/null")]);
    assert_eq!(out.stdout.trim(), format!("peer={HOST4}"), "{out:?}");
    assert_eq!(peer.join().unwrap(), [HOST4]);
    let out6 = sb.exec(&["ping", "-c1", "-W2", UPSTREAM6]);
    assert_eq!(out6.code(), Some(0), "{out6:?}");
    // what status shows, and the guest sees
    let net = network(&sb);
    assert_eq!(net["mode"], "nat");
    let link = net["host_link"].as_str().unwrap();
    assert!(lab.host_ip("-br link").contains(link));
    let addrs = addresses(&net);
    assert!(addrs[0].starts_with("10.213."), "{net}");
    let seen = sb.exec(&["ip", "-o", "addr", "show", "eth0"]);
    assert!(seen.stdout.contains(&addrs[0]), "{seen:?}");
    assert_eq!(net["ports"][0], "8080:80/tcp");
    let resolv = sb.exec(&["cat", "/etc/resolv.conf"]);
    assert!(resolv.stdout.contains("written by cradle"), "{resolv:?}");
    stop(&sb);
    drop(guard);
    assert_no_network_left(&sb, &lab);
}

#[test]
fn nat_guests_reach_each_other_and_keep_their_address_and_mac_across_reboot_and_restart() {
    let lab = NetLab::new("keep");
    let a = web_guest("net-keep-a", &lab);
    let b = Sandbox::busybox("net-keep-b").in_lab(&lab);
    let _ga = a.start_detached(&["--net", "nat", "--port", "8081:80"], secs(30));
    let _gb = b.start_detached(&["--net", "nat"], secs(30));
    let before = network(&a);
    let mac = a.exec(&["cat", "/sys/class/net/eth0/address"]).stdout;
    assert_eq!(mac.trim(), before["mac"], "{before}");
    let a_addr = addresses(&before)[0].clone();
    let ping = b.exec(&["ping", "-c1", "-W2", &a_addr]);
    assert_eq!(ping.code(), Some(0), "guest to guest: {ping:?}");

    let rebooted = a.run_cradle(&["stop", &a.name, "--mode", "reboot"], secs(60));
    assert_eq!(rebooted.code(), Some(0), "{rebooted:?}");
    assert_eq!(a.boot_number(), Some(2));
    assert_eq!(network(&a), before, "the same network after a reboot");
    let mac_again = a.exec(&["cat", "/sys/class/net/eth0/address"]).stdout;
    assert_eq!(mac_again, mac);
    serve(&a);
    let page = NetLab::http_get(&lab.upstream, &format!("{HOST4}:8081"));
    assert_eq!(
        page,
        Ok(format!("hello from {}\n", a.name)),
        "the forward after a reboot"
    );

    stop(&a);
    let _ga = a.start_detached(&["--net", "nat", "--port", "8081:80"], secs(30));
    let after = network(&a);
    assert_eq!(
        after["addresses"], before["addresses"],
        "the same lease after a restart"
    );
    assert_eq!(after["mac"], before["mac"]);
    stop(&a);
    stop(&b);
    assert_no_network_left(&a, &lab);
    assert_no_network_left(&b, &lab);
}

#[test]
fn a_guest_that_takes_another_address_or_mac_is_not_let_through() {
    let lab = NetLab::new("spoof");
    let sb = Sandbox::busybox("net-spoof").in_lab(&lab);
    let _guard = sb.start_detached(&["--net", "nat"], secs(30));
    let ping = |from: &[&str]| {
        let mut args = vec!["ping", "-c1", "-W1"];
        args.extend_from_slice(from);
        args.push(UPSTREAM4);
        sb.exec(&args).code()
    };
    assert_eq!(ping(&[]), Some(0), "its own address goes through");
    let add = sb.exec(&["ip", "addr", "add", "10.213.250.250/16", "dev", "eth0"]);
    assert_eq!(add.code(), Some(0), "{add:?}");
    assert_ne!(
        ping(&["-I", "10.213.250.250"]),
        Some(0),
        "a spoofed address"
    );
    let spoof6 = sb.exec(&[
        "sh",
        "-c",
        "ip addr add fd63:7261:646c::fffe/64 dev eth0 nodad && ping -c1 -W1 -I fd63:7261:646c::fffe 2001:db8:1::2",
    ]);
    assert_ne!(spoof6.code(), Some(0), "a spoofed IPv6 address: {spoof6:?}");
    let mac = sb.exec(&[
        "sh",
        "-c",
        "ip link set eth0 down && ip link set eth0 address 02:11:22:33:44:55 && ip link set eth0 up && ip route add default via 10.213.0.1",
    ]);
    assert_eq!(mac.code(), Some(0), "{mac:?}");
    assert_ne!(ping(&[]), Some(0), "a spoofed MAC");
    stop(&sb);
    assert_no_network_left(&sb, &lab);
}

#[test]
fn a_routed_guest_is_reached_at_its_own_addresses_and_through_a_forward() {
    let lab = NetLab::new("routed");
    let sb = web_guest("net-routed", &lab);
    let _guard = sb.start_detached(
        &[
            "--net",
            "routed",
            "--ip",
            "192.0.2.10",
            "--ip",
            "2001:db8:2::10",
            "--port",
            "8082:80",
        ],
        secs(30),
    );
    serve(&sb);
    let page = Ok(format!("hello from {}\n", sb.name));
    assert_eq!(NetLab::http_get(&lab.upstream, "192.0.2.10:80"), page);
    assert_eq!(NetLab::http_get(&lab.upstream, "[2001:db8:2::10]:80"), page);
    assert_eq!(
        NetLab::http_get(&lab.upstream, &format!("{HOST4}:8082")),
        page
    );
    // out, with its own address (nothing masquerades a routed guest)
    let peer = NetLab::echo_peer(&lab.upstream, &format!("{UPSTREAM4}:9001"), 1);
    let out = sb.exec(&["sh", "-c", &format!("nc {UPSTREAM4} 9001 </dev/null")]);
    assert_eq!(out.stdout.trim(), "peer=192.0.2.10", "{out:?}");
    peer.join().unwrap();
    // another address, then another MAC: what the guest sends with them never leaves
    // the host (upstream counts the echo requests it gets)
    let ping = |from: &str| {
        let before = NetLab::echo_requests(&lab.upstream);
        let args = ["ping", "-c1", "-W1", "-I", from, UPSTREAM4];
        let answered = sb.exec(&args).code() == Some(0);
        (answered, NetLab::echo_requests(&lab.upstream) - before)
    };
    assert_eq!(
        ping("192.0.2.10"),
        (true, 1),
        "its own address goes through"
    );
    let add = sb.exec(&["ip", "addr", "add", "192.0.2.99/32", "dev", "eth0"]);
    assert_eq!(add.code(), Some(0), "{add:?}");
    assert_eq!(ping("192.0.2.99"), (false, 0), "a spoofed address");
    let mac = sb.exec(&[
        "sh",
        "-c",
        "ip link set eth0 down && ip link set eth0 address 02:11:22:33:44:56 && ip link set eth0 up \
         && ip route add default via 169.254.1.1 dev eth0 onlink",
    ]);
    assert_eq!(mac.code(), Some(0), "{mac:?}");
    assert_eq!(ping("192.0.2.10"), (false, 0), "a spoofed MAC");
    stop(&sb);
    assert_no_network_left(&sb, &lab);
}

#[test]
fn bridge_macvlan_host_and_none_give_what_they_say() {
    let lab = NetLab::new("modes");
    let sb = Sandbox::busybox("net-modes").in_lab(&lab);
    lab.host_ip("link add br-lan type bridge");
    lab.host_ip("addr add 192.168.50.1/24 dev br-lan");
    lab.host_ip("link set br-lan up");
    let bridged = sb.run_in(
        &[
            "--net",
            "bridge=br-lan",
            "--ip",
            "192.168.50.10/24",
            "--gateway",
            "192.168.50.1",
            "--dns",
            "192.168.50.53",
        ],
        &[
            "sh",
            "-c",
            "ping -c1 -W2 192.168.50.1 >/dev/null && ip route show default && cat /etc/resolv.conf",
        ],
    );
    assert_eq!(bridged.code(), Some(0), "{bridged:?}");
    assert!(
        bridged.stdout.contains("default via 192.168.50.1"),
        "{bridged:?}"
    );
    assert!(
        bridged.stdout.contains("nameserver 192.168.50.53"),
        "{bridged:?}"
    );
    let macvlan = sb.run_in(
        &["--net", "macvlan=up0", "--ip", "198.51.100.50/24"],
        &["ping", "-c1", "-W2", UPSTREAM4],
    );
    assert_eq!(macvlan.code(), Some(0), "{macvlan:?}");
    let host = sb.run_in(&["--net", "host"], &["ip", "-o", "link"]);
    assert!(host.stdout.contains("up0"), "the host's links: {host:?}");
    let none = sb.run_in(&["--net", "none"], &["ip", "-o", "link"]);
    assert_eq!(none.stdout.lines().count(), 1, "lo alone: {none:?}");
    assert_no_network_left(&sb, &lab);
}

#[test]
fn a_killed_launcher_leaves_nothing_the_next_start_does_not_sweep() {
    let lab = NetLab::new("kill");
    let sb = Sandbox::busybox("net-kill").in_lab(&lab);
    let guard = sb.start_detached(&["--net", "nat", "--port", "8083:80"], secs(30));
    let launcher = sb.status()["launcher_pid"].as_i64().unwrap() as i32;
    kill(launcher, libc::SIGKILL);
    // the guest goes with its launcher
    let deadline = std::time::Instant::now() + secs(20);
    while !integration_tests::processes_naming(&sb.name).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the guest outlived its launcher"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(guard);
    let _again = sb.start_detached(&["--net", "nat"], secs(30));
    let rules = lab.host_nft("list ruleset");
    assert!(
        !rules.contains(&format!("tcp . 8083 {}", elements_of(&sb))),
        "the killed launcher's forward is still there:\n{rules}"
    );
    assert!(
        rules.contains(&elements_of(&sb)),
        "the new boot's filter:\n{rules}"
    );
    stop(&sb);
    assert_no_network_left(&sb, &lab);
}

fn refused(done: &Finished, naming: &str) {
    done.assert_one_line_error(2, naming);
}

#[test]
fn bad_network_input_is_one_line_and_makes_nothing() {
    let lab = NetLab::new("bad");
    let sb = Sandbox::busybox("net-bad").in_lab(&lab);
    let cases: [(&[&str], &str); 9] = [
        (&["--net", "bogus"], "bogus"),
        (&["--net", "bridge=nope"], "nope"),
        (&["--net", "bridge=up0"], "not a bridge"),
        (&["--net", "macvlan=nope"], "nope"),
        (&["--net", "routed"], "--ip"),
        (&["--net", "nat", "--port", "70000"], "1 to 65535"),
        (&["--net", "routed", "--ip", "192.0.2.1/33"], "192.0.2.1/33"),
        (
            &["--net", "routed", "--ip", "not-an-address"],
            "not-an-address",
        ),
        (&["--net", "none", "--port", "80"], "--port"),
    ];
    for (options, naming) in cases {
        refused(&sb.run_in(options, &["true"]), naming);
    }
    // an address another running guest holds
    let other = Sandbox::busybox("net-bad-holder").in_lab(&lab);
    let _guard = other.start_detached(&["--net", "routed", "--ip", "192.0.2.20"], secs(30));
    let taken = sb.run_in(&["--net", "routed", "--ip", "192.0.2.20"], &["true"]);
    refused(&taken, &other.name);
    // a host port another running guest forwards
    let forwarder = Sandbox::busybox("net-bad-forwarder").in_lab(&lab);
    let _fguard = forwarder.start_detached(&["--net", "nat", "--port", "8090:80"], secs(30));
    let clash = sb.run_in(&["--net", "nat", "--port", "8090:8080"], &["true"]);
    refused(&clash, "8090/tcp is forwarded to another guest");
    stop(&forwarder);
    stop(&other);
    assert_no_network_left(&sb, &lab);
    assert_no_network_left(&other, &lab);
    assert_no_network_left(&forwarder, &lab);
}

#[test]
fn a_debian_guest_with_systemd_serves_through_a_forward_and_reaches_upstream() {
    let lab = NetLab::new("deb");
    let sb = Sandbox::debian("net-debian").in_lab(&lab);
    // a web server for the guest: the host's static busybox
    fs::copy("/bin/busybox", sb.path("/usr/local/bin/busybox")).unwrap();
    sb.write("/www/index.html", "hello from debian\n", 0o644);
    let _guard = sb.start_detached(&["--net", "nat", "--port", "8085:80"], secs(60));
    sb.wait_system_running(secs(120));
    serve_with(&sb, "/usr/local/bin/busybox");
    assert_eq!(
        NetLab::http_get(&lab.upstream, &format!("{HOST4}:8085")),
        Ok("hello from debian\n".to_owned())
    );
    let peer = NetLab::echo_peer(&lab.upstream, &format!("{UPSTREAM4}:9002"), 1);
    let out = sb.exec(&[
        "bash",
        "-c",
        &format!("exec 3<>/dev/tcp/{UPSTREAM4}/9002 && cat <&3"),
    ]);
    assert_eq!(out.stdout.trim(), format!("peer={HOST4}"), "{out:?}");
    peer.join().unwrap();
    // systemd left the link as cradle made it
    let link = sb.exec(&[
        "/usr/local/bin/busybox",
        "ip",
        "-o",
        "-4",
        "addr",
        "show",
        "eth0",
    ]);
    assert!(link.stdout.contains("10.213."), "{link:?}");
    stop(&sb);
    assert_no_network_left(&sb, &lab);
}

fn serve_with(sb: &Sandbox, busybox: &str) {
    let httpd = sb.exec(&[busybox, "httpd", "-p", "80", "-h", "/www"]);
    assert_eq!(httpd.code(), Some(0), "{httpd:?}");
}

#[test]
fn set_port_replaces_the_forwards_of_a_running_guest_and_of_its_later_boots() {
    let lab = NetLab::new("set");
    let sb = web_guest("net-set", &lab);
    let _guard = sb.start_detached(&["--net", "nat", "--port", "8086:80"], secs(30));
    serve(&sb);
    let page = Ok(format!("hello from {}\n", sb.name));
    let set = sb.run_cradle(&["set", &sb.name, "--port", "9086:80"], secs(20));
    assert_eq!(set.code(), Some(0), "{set:?}");
    assert_eq!(
        NetLab::http_get(&lab.upstream, &format!("{HOST4}:9086")),
        page
    );
    assert!(
        NetLab::http_get(&lab.upstream, &format!("{HOST4}:8086")).is_err(),
        "the old forward is gone"
    );
    assert_eq!(network(&sb)["ports"][0], "9086:80/tcp");
    let rebooted = sb.run_cradle(&["stop", &sb.name, "--mode", "reboot"], secs(60));
    assert_eq!(rebooted.code(), Some(0), "{rebooted:?}");
    serve(&sb);
    assert_eq!(
        NetLab::http_get(&lab.upstream, &format!("{HOST4}:9086")),
        page,
        "the next boot has the new forward"
    );
    let none = sb.run_cradle(&["set", &sb.name, "--port", "none"], secs(20));
    assert_eq!(none.code(), Some(0), "{none:?}");
    assert!(NetLab::http_get(&lab.upstream, &format!("{HOST4}:9086")).is_err());
    stop(&sb);
    // a guest without a forwardable network
    let plain = Sandbox::busybox("net-set-none").in_lab(&lab);
    let _g = plain.start_detached(&[], secs(30));
    let refused = plain.run_cradle(&["set", &plain.name, "--port", "80"], secs(20));
    refused.assert_one_line_error(2, "nat and routed");
    stop(&plain);
    assert_no_network_left(&sb, &lab);
    assert_no_network_left(&plain, &lab);
}
