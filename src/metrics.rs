//! Prometheus metrics, all prefixed `thinkscale_`. One registry for the process.

use std::sync::OnceLock;

use prometheus::{
    exponential_buckets, linear_buckets, Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub request_latency: HistogramVec,
    pub ttft: HistogramVec,
    pub prompt_tokens: IntCounter,
    pub prompt_cached_tokens: IntCounter,
    pub generated_tokens: IntCounter,
    pub decode_steps: IntCounter,
    pub active_sequences: IntGauge,
    pub queue_depth: IntGauge,
    pub kv_cells_used: IntGauge,
    pub kv_cells_total: IntGauge,
    /// 1 while `cpu_wait = "auto"` has the compute threads decoding serially (a shared machine).
    pub cpu_serial: IntGauge,
    /// 1 while the engine thread runs, 0 once it has failed.
    pub engine_up: IntGauge,
    /// Remote backend: each replica's state, work in flight, and requests by outcome.
    pub replica_up: IntGaugeVec,
    pub replica_in_flight: IntGaugeVec,
    pub replica_requests: IntCounterVec,
    pub thinking_tokens: HistogramVec,
    pub thinking_seconds: HistogramVec,
    pub forced_cutoffs: IntCounterVec,
    pub wait_extensions: IntCounterVec,
    pub samples_used: HistogramVec,
    pub early_stops: IntCounter,
    /// Chain confidence scores, by what the vote did with the chain.
    pub chain_confidence: HistogramVec,
    pub graded: IntCounterVec,
    pub graded_thinking_seconds: HistogramVec,
    pub graded_thinking_tokens: HistogramVec,
}

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(c.clone())).expect("unique metric");
    c
}

fn counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).expect("valid metric");
    r.register(Box::new(c.clone())).expect("unique metric");
    c
}

fn gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("valid metric");
    r.register(Box::new(g.clone())).expect("unique metric");
    g
}

fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(g.clone())).expect("unique metric");
    g
}

fn histogram(r: &Registry, name: &str, help: &str, labels: &[&str], buckets: Vec<f64>) -> HistogramVec {
    let h = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels).expect("valid metric");
    r.register(Box::new(h.clone())).expect("unique metric");
    h
}

impl Metrics {
    fn new() -> Self {
        let r = Registry::new_custom(Some("thinkscale".into()), None).expect("registry");
        let secs = exponential_buckets(0.01, 2.0, 14).expect("buckets");
        let toks = exponential_buckets(1.0, 2.0, 15).expect("buckets");
        let grade_labels = &["effort", "budget", "samples", "outcome"][..];
        Self {
            requests: counter_vec(&r, "requests_total", "HTTP requests by endpoint and status code", &["endpoint", "status"]),
            request_latency: histogram(&r, "request_duration_seconds", "End-to-end request latency", &["endpoint"], secs.clone()),
            ttft: histogram(
                &r,
                "time_to_first_token_seconds",
                "Time from arrival to the first generated token",
                &["endpoint"],
                secs.clone(),
            ),
            prompt_tokens: counter(
                &r,
                "prompt_tokens_total",
                "Prompt tokens prefilled (a forked prompt counts once; over remote engines, as their usage reports)",
            ),
            prompt_cached_tokens: counter(
                &r,
                "prompt_cached_tokens_total",
                "Prompt tokens not prefilled because the prompt cache held them",
            ),
            generated_tokens: counter(&r, "generated_tokens_total", "Tokens sampled by the model"),
            decode_steps: counter(&r, "decode_steps_total", "llama_decode calls"),
            active_sequences: gauge(&r, "active_sequences", "Sequences being decoded"),
            queue_depth: gauge(&r, "queue_depth", "Requests waiting for a slot"),
            kv_cells_used: gauge(&r, "kv_cells_used", "KV cache cells in use (shared prompt cells counted once)"),
            kv_cells_total: gauge(&r, "kv_cells_total", "KV cache size in cells"),
            cpu_serial: gauge(&r, "cpu_serial", "1 while cpu_wait auto decodes on one thread because the CPU is shared"),
            engine_up: gauge(
                &r,
                "engine_up",
                "1 while the decode engine runs, 0 after it failed (remote backend: 1 while any replica is up)",
            ),
            replica_up: gauge_vec(
                &r,
                "backend_replica_up",
                "Remote backend: 1 while a replica answers, 0 while it is marked down",
                &["replica"],
            ),
            replica_in_flight: gauge_vec(
                &r,
                "backend_replica_in_flight",
                "Remote backend: requests (all their samples) on a replica",
                &["replica"],
            ),
            replica_requests: counter_vec(
                &r,
                "backend_replica_requests_total",
                "Remote backend: HTTP requests to a replica by outcome (ok, error)",
                &["replica", "outcome"],
            ),
            thinking_tokens: histogram(&r, "thinking_tokens", "Thinking tokens per sequence", &["effort"], toks.clone()),
            thinking_seconds: histogram(&r, "thinking_seconds", "Thinking time per sequence", &["effort"], secs.clone()),
            forced_cutoffs: counter_vec(&r, "forced_cutoffs_total", "Thinking cut off at the budget", &["effort"]),
            wait_extensions: counter_vec(&r, "wait_extensions_total", "Early closes replaced by Wait", &["effort"]),
            samples_used: histogram(&r, "samples_used", "Samples decoded per self-consistency request", &["effort"], toks.clone()),
            early_stops: counter(&r, "adaptive_early_stops_total", "Self-consistency requests stopped early by their stopping rule"),
            chain_confidence: histogram(
                &r,
                "chain_confidence",
                "Chain confidence score (DeepConf) per sample; fate: voted, pruned (online filter) or dropped (keep_top)",
                &["fate"],
                linear_buckets(0.0, 1.0, 31).expect("buckets"),
            ),
            graded: counter_vec(&r, "graded_requests_total", "Graded requests by effort, budget bucket, samples and outcome", grade_labels),
            graded_thinking_seconds: histogram(&r, "graded_thinking_seconds", "Thinking seconds of graded requests", grade_labels, secs),
            graded_thinking_tokens: histogram(&r, "graded_thinking_tokens", "Thinking tokens of graded requests", grade_labels, toks),
            registry: r,
        }
    }

    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buf).expect("text encoding");
        String::from_utf8(buf).expect("prometheus text is UTF-8")
    }
}

pub fn metrics() -> &'static Metrics {
    static M: OnceLock<Metrics> = OnceLock::new();
    M.get_or_init(Metrics::new)
}
