"""Logs as users export them: each transport prefix or envelope gives service, pod, container, host
and leaves the clean line; traces are joined also when every trace line came wrapped on its own."""

from __future__ import annotations

import json

from anomaly.intake import parse_lines
from anomaly.pods import workload_of_pod
from pipelines.sources.files import read_tail


def one(line: str):
    records = parse_lines([line]).records
    assert len(records) == 1, records
    return records[0]


def test_workload_of_pod_by_controller_naming_rules():
    assert workload_of_pod("checkout-7d9f8b6c5-x2x9z") == "checkout"  # deployment
    assert workload_of_pod("orders-db-0") == "orders-db"  # statefulset
    assert workload_of_pod("calico-node-hv5xj") == "calico-node"  # daemonset
    assert workload_of_pod("report-builder-28796234-5nj8q") == "report-builder"  # cronjob
    assert workload_of_pod("spark-etl-7f3a9c8d1e2b4f5a-exec-3") == "spark-etl"  # spark executor
    assert workload_of_pod("prod/billing-db-0") == "billing-db"
    for name in ("redis-cache", "my-proxy", "frontend", "ip-10-0-5-88"):  # no controller suffix: unchanged
        assert workload_of_pod(name) == name


def test_loki_logcli_default_output():
    rec = one('2025-03-21T18:40:39.439Z {app="checkout", container="checkout", namespace="prod", '
              'pod="checkout-7d9f8b6c5-x2x9z"} ts=2025-03-21T18:40:39.439Z level=error msg="payment failed" service=checkout')
    assert (rec.service, rec.pod, rec.container, rec.level) == ("checkout", "checkout-7d9f8b6c5-x2x9z", "checkout", "ERROR")
    assert rec.message == "payment failed" and rec.timestamp == 1742582439.439


def test_loki_logcli_jsonl():
    line = json.dumps({"labels": {"container": "orders", "pod": "orders-5c8d7f9b4-abcde", "namespace": "prod"},
                       "line": "2025-03-21 18:44:19.880 ERROR 1 --- [exec-1] o.h.SqlExceptionHelper : Connection refused",
                       "timestamp": "2025-03-21T18:44:19.880Z"})
    rec = one(line)
    assert (rec.service, rec.pod, rec.level) == ("orders", "orders-5c8d7f9b4-abcde", "ERROR")
    assert rec.message.startswith("1 --- [exec-1]") and "{" not in rec.message


def test_stern_with_and_without_timestamps():
    with_ts = one("orders-db-0 postgres 2025-03-21T18:42:18.188343702Z 2025-03-21 18:42:18.188 UTC [31340] LOG:  checkpoint starting")
    assert (with_ts.service, with_ts.pod, with_ts.container) == ("orders-db", "orders-db-0", "postgres")
    assert with_ts.message.startswith("UTC [31340] LOG:") or with_ts.message.startswith("[31340] LOG:")
    plain = one("calico-node-hv5xj calico-node bird: Mesh_10_0_5_12: State changed to down")
    assert (plain.service, plain.pod, plain.host) == ("calico-node", "calico-node-hv5xj", None)
    assert plain.message == "bird: Mesh_10_0_5_12: State changed to down"
    # an ordinary sentence is not a stern prefix
    assert one("connection pool stats active=3").service is None


def test_stern_across_namespaces_puts_the_namespace_first():
    rec = one("prod checkout-7d9f8b6c5-x2x9z app 2025-03-21T18:42:18.188Z ERROR payment step failed: upstream 503")
    assert (rec.service, rec.pod, rec.container) == ("checkout", "checkout-7d9f8b6c5-x2x9z", "app")
    assert rec.message.endswith("payment step failed: upstream 503") and rec.level == "ERROR"
    plain = one("kube-system coredns-5d78c9869d-7kxqz coredns [ERROR] plugin/errors: 2 api.example.com. A: read udp i/o timeout")
    assert (plain.service, plain.pod) == ("coredns", "coredns-5d78c9869d-7kxqz")
    # a plain stern line is not read as one with a namespace
    same = one("calico-node-hv5xj calico-node bird: Mesh_10_0_5_12: State changed to down")
    assert (same.service, same.container) == ("calico-node", "calico-node")


def test_kubectl_logs_prefix_and_docker_compose():
    rec = one("[pod/payments-6b7f9c8d5-q2w4r/app] 2025-01-01T10:00:00Z WARN retrying charge")
    assert (rec.service, rec.pod, rec.container, rec.level, rec.message) == (
        "payments", "payments-6b7f9c8d5-q2w4r", "app", "WARN", "retrying charge")
    rec = one("pricing-1  | ERROR:    Application startup failed. Exiting.")
    assert rec.service == "pricing" and rec.message.startswith("ERROR:") and rec.level == "ERROR"
    assert one("shop_web_1   | GET / 200").service == "web"  # compose v1 container name


def test_docker_json_file_with_compose_attrs_and_cri_partial_lines():
    line = json.dumps({"log": "quote computed sku=1\n", "stream": "stdout",
                       "attrs": {"com.docker.compose.service": "pricing"}, "time": "2025-04-02T14:00:00.066Z"})
    rec = one(line)
    assert (rec.service, rec.message, rec.timestamp) == ("pricing", "quote computed sku=1", 1743602400.066)
    cri = ["2025-04-02T14:00:00.100000000Z stdout P a very long line, ",
           "2025-04-02T14:00:00.100000001Z stdout F continued here",
           "2025-04-02T14:00:01.000000000Z stderr F ERROR next"]
    records = parse_lines(cri).records
    assert [r.message for r in records] == ["a very long line, continued here", "ERROR next"]
    assert records[1].level == "ERROR"


def test_journald_short_iso_classic_and_json():
    iso = one("2025-07-01T12:35:02+0000 ip-10-0-6-19 kubelet[1873]: E0701 12:35:02.975288    1873 pod_workers.go:1298] \"Error syncing pod\"")
    assert (iso.service, iso.host, iso.level) == ("kubelet", "ip-10-0-6-19", "ERROR")
    assert iso.timestamp == 1751373302.0
    records = parse_lines([
        '2025-07-01T12:35:00Z INFO orders: started',  # an application's header, not a journald host
        "Jul  1 12:35:02 ip-10-0-6-19 kernel: Out of memory: Killed process 4123 (java)",
    ]).records
    assert records[0].service is None and records[0].host is None
    kernel = records[1]
    assert (kernel.service, kernel.host) == ("kernel", "ip-10-0-6-19")
    assert kernel.message.startswith("Out of memory") and kernel.timestamp == 1751373302.0  # the batch's year
    line = json.dumps({"__REALTIME_TIMESTAMP": "1751373302975288", "_HOSTNAME": "ip-10-0-6-19", "PRIORITY": "3",
                       "_SYSTEMD_UNIT": "containerd.service", "SYSLOG_IDENTIFIER": "containerd",
                       "MESSAGE": "failed to stop sandbox"})
    rec = one(line)
    assert (rec.service, rec.host, rec.level, rec.message) == ("containerd", "ip-10-0-6-19", "ERROR", "failed to stop sandbox")
    assert abs(rec.timestamp - 1751373302.975288) < 1e-3


def test_syslog_rfc3164_and_rfc5424():
    rec = one("<34>Oct 11 22:14:15 mymachine su[230]: 'su root' failed for lonvick on /dev/pts/8")
    assert (rec.service, rec.host, rec.level) == ("su", "mymachine", "FATAL")
    assert rec.message == "'su root' failed for lonvick on /dev/pts/8"
    rec = one('<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut="3"] An application event')
    assert (rec.service, rec.host, rec.level, rec.message) == ("evntslog", "mymachine.example.com", "INFO", "An application event")


def test_kubernetes_events_table_and_json():
    rec = one("5m          Warning   BackOff     pod/checkout-7d9f8b6c5-x2x9z   Back-off restarting failed container")
    assert (rec.service, rec.pod, rec.level) == ("checkout", "checkout-7d9f8b6c5-x2x9z", "WARN")
    assert rec.message == "BackOff: Back-off restarting failed container"
    event = {"reason": "Unhealthy", "message": "Readiness probe failed", "type": "Warning",
             "involvedObject": {"kind": "Pod", "name": "coredns-5d78c9869d-q4wzn", "namespace": "kube-system"},
             "lastTimestamp": "2025-06-11T03:15:12Z"}
    rec = one(json.dumps(event))
    assert (rec.service, rec.level, rec.message, rec.timestamp) == (
        "coredns", "WARN", "Unhealthy: Readiness probe failed", 1749611712.0)
    node = dict(event, reason="SystemOOM", involvedObject={"kind": "Node", "name": "ip-10-0-5-88"})
    rec = one(json.dumps({"verb": "ADDED", "event": node}))
    assert (rec.service, rec.host) == ("ip-10-0-5-88", "ip-10-0-5-88") and rec.message.startswith("SystemOOM: ")


def test_json_lines_usual_keys_and_pino_levels():
    rec = one(json.dumps({"level": 50, "time": 1741947900380, "hostname": "frontend-6d9f8b7c5-wpggs", "msg": "upstream timeout"}))
    assert (rec.service, rec.level, rec.pod) == ("frontend", "ERROR", "frontend-6d9f8b7c5-wpggs")
    rec = one(json.dumps({"asctime": "2025-06-11 03:16:09,494", "levelname": "WARNING", "name": "notification.worker",
                          "message": "delivery slow"}))
    assert (rec.service, rec.level, rec.message) == ("notification", "WARN", "delivery slow")
    rec = one(json.dumps({"event": "cart merged", "lvl": "info", "logger": "com.shop.cart.Api", "app": "cart"}))
    assert (rec.service, rec.level) == ("cart", "INFO")
    assert one(json.dumps({"msg": "x", "logger": "com.shop.Api"})).service is None  # an organisation is no service


def test_spring_boot_application_name_field():
    rec = one("2025-12-01T11:25:00.094Z  INFO 1 --- [payments] [o-8080-exec-142] c.s.p.StripeClient : charge ok")
    assert (rec.service, rec.level) == ("payments", "INFO")


def test_traces_joined_within_their_stream_when_every_line_is_prefixed():
    lines = [
        "checkout-7d9f8b6c5-x2x9z checkout 2025-07-01T12:36:26.9Z 2025-07-01T12:36:26.9Z ERROR 1 --- [checkout] [exec-1] c.s.Api : order failed",
        "checkout-7d9f8b6c5-x2x9z checkout 2025-07-01T12:36:26.9Z java.net.ConnectException: Connection refused",
        "inventory-5f6d7c8b9-pcbx2 inventory 2025-07-01T12:36:27.0Z INFO reservation created",
        "checkout-7d9f8b6c5-x2x9z checkout 2025-07-01T12:36:26.9Z \tat com.shop.OrdersClient.create(OrdersClient.java:57)",
        "checkout-7d9f8b6c5-x2x9z checkout 2025-07-01T12:36:26.9Z Caused by: java.io.IOException: reset",
    ]
    records = parse_lines(lines).records
    assert [r.service for r in records] == ["checkout", "inventory"]
    assert records[0].message.count("\n") == 3 and "OrdersClient.java:57" in records[0].message
    assert "checkout-7d9f8b6c5" not in records[0].message


def test_python_traceback_per_docker_line_and_go_panic():
    def docker(text: str, service: str) -> str:
        return json.dumps({"log": text + "\n", "stream": "stderr", "attrs": {"com.docker.compose.service": service}})

    lines = [docker("ERROR:    Traceback (most recent call last):", "pricing"),
             docker('  File "/app/main.py", line 3, in <module>', "pricing"),
             docker("GET /healthz 200", "gateway"),
             docker("ValueError: bad config", "pricing")]
    records = parse_lines(lines).records
    assert [r.service for r in records] == ["pricing", "gateway"]
    assert records[0].message.endswith("ValueError: bad config")
    go = ["panic: runtime error: invalid memory address or nil pointer dereference",
          "[signal SIGSEGV: segmentation violation code=0x1 addr=0x0 pc=0x4a2b1c]",
          "goroutine 1 [running]:",
          "main.(*Server).handle(0x0)",
          "\t/app/server.go:42 +0x1c",
          "created by net/http.(*Server).Serve in goroutine 7"]
    records = parse_lines(go).records
    assert len(records) == 1 and records[0].message.endswith("in goroutine 7")


def test_whole_file_json_documents_are_read_as_lines(tmp_path):
    answer = {"status": "success", "data": {"resultType": "streams", "result": [
        {"stream": {"app": "cart", "pod": "cart-7d9f8b6c5-x2x9z"},
         "values": [["1742582439439000000", "level=error msg=\"redis timeout\""], ["1742582438000000000", "level=info msg=ok"]]},
    ]}}
    path = tmp_path / "loki.json"
    path.write_text(json.dumps(answer, indent=2))
    records = parse_lines(read_tail(path, 1 << 20).lines).records
    assert [(r.service, r.message) for r in records] == [("cart", "ok"), ("cart", "redis timeout")]
    assert abs(records[1].timestamp - 1742582439.439) < 1e-3
    events = tmp_path / "events.json"
    events.write_text(json.dumps({"kind": "EventList", "items": [
        {"reason": "OOMKilled", "message": "container killed", "type": "Warning",
         "involvedObject": {"kind": "Pod", "name": "spark-etl-7f3a9c8d1e2b4f5a-exec-3"}}]}, indent=1))
    rec = parse_lines(read_tail(events, 1 << 20).lines).records[0]
    assert rec.service == "spark-etl" and rec.message == "OOMKilled: container killed"


def test_a_hyphenated_name_after_the_level_is_the_writer():
    """``<time> ERROR web-api worker loop lagging`` (the README's own example): web-api wrote it."""
    rec = one("2024-01-07T10:29:01Z ERROR web-api worker loop lagging cpu_throttled_pct=93")
    assert (rec.service, rec.level, rec.message) == ("web-api", "ERROR", "worker loop lagging cpu_throttled_pct=93")
    assert one("2025-01-01T10:00:00Z WARN orders-service: retrying charge").service == "orders-service"
    # a bare word after the level is the message's first word, not a service
    assert one("2025-01-01T10:00:00Z ERROR connection refused by peer").service is None


def test_log_platform_exports_with_the_event_one_level_down():
    """An Elasticsearch/OpenSearch hit (``_source``), a Datadog export (``attributes``, level in
    ``status``), Google Cloud Logging (``jsonPayload`` or ``textPayload``, the pod in
    ``resource.labels``, the app in ``labels["k8s-pod/app"]``), Fluent Bit and Vector Kubernetes
    metadata (app labels before a generic container name)."""
    es = one(json.dumps({"_index": "logs-2025.12.06", "_id": "a1", "_source": {
        "@timestamp": "2025-12-06T10:00:00.123Z", "message": "timeout calling inventory", "level": "ERROR",
        "kubernetes": {"pod_name": "cart-7d9f8b6c5-x2x9z", "container_name": "cart"}}}))
    assert (es.message, es.level, es.service, es.pod, es.timestamp) == (
        "timeout calling inventory", "ERROR", "cart", "cart-7d9f8b6c5-x2x9z", 1765015200.123)
    dd = one(json.dumps({"id": "AQAA", "attributes": {"timestamp": "2025-12-06T10:00:00.123Z", "status": "error",
                                                       "service": "checkout", "message": "failed to call payments"}}))
    assert (dd.message, dd.level, dd.service) == ("failed to call payments", "ERROR", "checkout")
    gcp = one(json.dumps({"insertId": "x1", "jsonPayload": {"message": "db timeout"}, "severity": "ERROR",
                          "timestamp": "2025-12-06T10:00:00.5Z", "labels": {"k8s-pod/app": "frontend"},
                          "resource": {"type": "k8s_container", "labels": {"pod_name": "frontend-6b8d9c7f5-qwert",
                                                                          "container_name": "server", "namespace_name": "default"}}}))
    assert (gcp.message, gcp.level, gcp.service, gcp.pod, gcp.container) == (
        "db timeout", "ERROR", "frontend", "frontend-6b8d9c7f5-qwert", "server")
    text = one(json.dumps({"textPayload": "dial tcp 10.0.0.5:6379: connect: connection refused", "severity": "ERROR",
                           "timestamp": "2025-12-06T10:00:00Z",
                           "resource": {"type": "k8s_container", "labels": {"pod_name": "cart-7d9f8b6c5-x2x9z", "container_name": "server"}}}))
    assert (text.message, text.service, text.pod) == ("dial tcp 10.0.0.5:6379: connect: connection refused", "cart", "cart-7d9f8b6c5-x2x9z")
    fluent = one(json.dumps({"date": 1765015200.25, "log": "2025-12-06 10:00:00 ERROR connection refused to orders-db:5432",
                             "stream": "stderr", "kubernetes": {"pod_name": "web-7d9f8b6c5-x2x9z", "container_name": "server",
                                                                "labels": {"app": "checkout"}}}))
    assert (fluent.service, fluent.container, fluent.level) == ("checkout", "server", "ERROR")
    vector = one(json.dumps({"message": "upstream timed out", "timestamp": "2025-12-06T10:00:00Z",
                             "kubernetes": {"pod_name": "api-5c8d7f9b4-abcde", "container_name": "main",
                                            "pod_labels": {"app.kubernetes.io/name": "public-api"}}}))
    assert (vector.service, vector.container) == ("public-api", "main")
    access = one(json.dumps({"time": "2025-12-06T10:00:00Z", "status": 503, "msg": "GET /x", "service": "edge"}))
    assert (access.level, access.service) == (None, "edge")  # an HTTP status names no level
