//! What `[telemetry]` and the standard `OTEL_*` variables ask for, merged
//! into one [`TraceSettings`] (or none: no endpoint, no export).
//!
//! Precedence: a key set in the config file wins over the variable that
//! means the same; the variables fill what the file leaves unset. Every
//! value is checked here, and a bad one is an error naming the key or the
//! variable it came from.

use serde::{Deserialize, Serialize};

/// The default export timeout, in ms (the OTLP specification's).
pub const DEFAULT_TIMEOUT_MS: u64 = 10_000;
/// The path the OTLP/HTTP trace service listens on.
pub const TRACES_PATH: &str = "/v1/traces";

/// `[telemetry]` in the config file.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// Where to send spans: an `http://host:port` OTLP/HTTP receiver
    /// (`/v1/traces` is added when the URL has no path). Unset, with no
    /// `OTEL_EXPORTER_OTLP_*ENDPOINT` variable either: nothing is exported.
    pub otlp_endpoint: Option<String>,
    /// The share of new traces recorded, `0.0..=1.0`; an event whose input
    /// carries a `traceparent` follows its sampled flag (parent-based).
    pub sample_ratio: Option<f64>,
    /// `service.name` of the spans (default `weir`).
    pub service_name: Option<String>,
    /// Longest wait for one export request, in ms.
    pub export_timeout_ms: Option<u64>,
}

impl TelemetryConfig {
    /// Bounds of the file's keys: the key (below `telemetry`) and what is
    /// wrong.
    pub fn check(&self) -> Result<(), (String, String)> {
        if let Some(endpoint) = &self.otlp_endpoint {
            endpoint_url(endpoint, false).map_err(|m| ("otlp_endpoint".to_string(), m))?;
        }
        if let Some(ratio) = self.sample_ratio {
            check_ratio(ratio).map_err(|m| ("sample_ratio".to_string(), m))?;
        }
        if let Some(name) = &self.service_name
            && name.trim().is_empty()
        {
            return Err(("service_name".into(), "must not be empty".into()));
        }
        if let Some(ms) = self.export_timeout_ms {
            check_timeout(ms).map_err(|m| ("export_timeout_ms".to_string(), m))?;
        }
        Ok(())
    }
}

/// Which traces are recorded: `ratio` of new traces (by trace ID), and,
/// when `parent_based`, every trace whose input's `traceparent` is sampled
/// and none whose is not.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampling {
    /// Follow the input's sampled flag when it has a `traceparent`.
    pub parent_based: bool,
    /// The share of root traces recorded.
    pub ratio: f64,
}

/// Where and what to export.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceSettings {
    /// The full URL spans are POSTed to.
    pub endpoint: String,
    /// The sampler.
    pub sampling: Sampling,
    /// `service.name`.
    pub service_name: String,
    /// Longest wait for one export request.
    pub timeout_ms: u64,
    /// Extra request headers (`OTEL_EXPORTER_OTLP_HEADERS`).
    pub headers: Vec<(String, String)>,
}

impl TraceSettings {
    /// Merge `config` with the variables `env` reads. `Ok(None)` when no
    /// endpoint is set anywhere or `OTEL_SDK_DISABLED=true`.
    pub fn resolve(
        config: &TelemetryConfig,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Self>, String> {
        let var = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        if var("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
            return Ok(None);
        }
        let endpoint = if let Some(url) = &config.otlp_endpoint {
            endpoint_url(url, false).map_err(|m| format!("telemetry.otlp_endpoint: {m}"))?
        } else if let Some(url) = var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
            endpoint_url(&url, false)
                .map_err(|m| format!("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT={url:?}: {m}"))?
        } else if let Some(url) = var("OTEL_EXPORTER_OTLP_ENDPOINT") {
            endpoint_url(&url, true)
                .map_err(|m| format!("OTEL_EXPORTER_OTLP_ENDPOINT={url:?}: {m}"))?
        } else {
            return Ok(None);
        };
        for name in [
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ] {
            if let Some(p) = var(name)
                && p.trim() != "http/protobuf"
            {
                return Err(format!(
                    "{name}={p:?}: Weir exports OTLP over HTTP with protobuf only: use `http/protobuf` or unset it"
                ));
            }
        }
        let sampling = match config.sample_ratio {
            Some(ratio) => Sampling {
                parent_based: true,
                ratio,
            },
            None => sampling_from_env(var("OTEL_TRACES_SAMPLER"), var("OTEL_TRACES_SAMPLER_ARG"))?,
        };
        let service_name = config
            .service_name
            .clone()
            .or_else(|| var("OTEL_SERVICE_NAME"))
            .unwrap_or_else(|| "weir".into());
        let timeout_ms = match config.export_timeout_ms {
            Some(ms) => ms,
            None => timeout_from_env(&var)?,
        };
        let headers = match var("OTEL_EXPORTER_OTLP_TRACES_HEADERS") {
            Some(h) => parse_headers("OTEL_EXPORTER_OTLP_TRACES_HEADERS", &h)?,
            None => match var("OTEL_EXPORTER_OTLP_HEADERS") {
                Some(h) => parse_headers("OTEL_EXPORTER_OTLP_HEADERS", &h)?,
                None => Vec::new(),
            },
        };
        Ok(Some(Self {
            endpoint,
            sampling,
            service_name,
            timeout_ms,
            headers,
        }))
    }
}

/// The URL to POST spans to, from `url`: an `http://` URL with a host.
/// `base` (`OTEL_EXPORTER_OTLP_ENDPOINT`) always gets `v1/traces` added;
/// otherwise it is added only when the URL has no path.
fn endpoint_url(url: &str, base: bool) -> Result<String, String> {
    let url = url.trim();
    if url.starts_with("https://") {
        return Err(
            "https is not supported: Weir's exporter speaks plain HTTP (no TLS stack in the binary); send to a collector on this host or network, e.g. `http://127.0.0.1:4318`"
                .into(),
        );
    }
    let bad = || {
        format!(
            "`{url}` is not an OTLP/HTTP endpoint: write an http:// URL such as `http://127.0.0.1:4318`"
        )
    };
    let Some(rest) = url.strip_prefix("http://") else {
        return Err(bad());
    };
    let uri: http::Uri = url.parse().map_err(|_| bad())?;
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    if uri.host().is_none_or(str::is_empty) || authority.contains('@') {
        return Err(bad());
    }
    if let Some((_, port)) = authority.rsplit_once(':')
        && !authority.ends_with(']')
        && port.parse::<u16>().is_err()
    {
        return Err(bad());
    }
    if url.contains(['?', '#']) {
        return Err(format!(
            "`{url}`: an OTLP endpoint takes no query or fragment"
        ));
    }
    let path = &rest[authority_end..];
    Ok(if base || path.is_empty() || path == "/" {
        format!("{}{TRACES_PATH}", url.trim_end_matches('/'))
    } else {
        url.to_string()
    })
}

fn check_ratio(ratio: f64) -> Result<(), String> {
    if (0.0..=1.0).contains(&ratio) {
        Ok(())
    } else {
        Err(format!(
            "{ratio} is not a ratio: use 0.0 (none) to 1.0 (every trace)"
        ))
    }
}

fn check_timeout(ms: u64) -> Result<(), String> {
    if (1..=600_000).contains(&ms) {
        Ok(())
    } else {
        Err("must be 1..=600000 (ms)".into())
    }
}

/// `OTEL_TRACES_SAMPLER` and its argument, as the OpenTelemetry
/// specification names them; the default is `parentbased_always_on`.
fn sampling_from_env(sampler: Option<String>, arg: Option<String>) -> Result<Sampling, String> {
    let ratio = || -> Result<f64, String> {
        let Some(arg) = &arg else { return Ok(1.0) };
        let ratio: f64 = arg.trim().parse().map_err(|_| {
            format!(
                "OTEL_TRACES_SAMPLER_ARG={arg:?}: not a number: use 0.0 (none) to 1.0 (every trace)"
            )
        })?;
        check_ratio(ratio).map_err(|m| format!("OTEL_TRACES_SAMPLER_ARG={arg:?}: {m}"))?;
        Ok(ratio)
    };
    let name = sampler
        .as_deref()
        .map_or("parentbased_always_on", str::trim);
    let (parent_based, ratio) = match name {
        "always_on" => (false, 1.0),
        "always_off" => (false, 0.0),
        "traceidratio" => (false, ratio()?),
        "parentbased_always_on" if sampler.is_some() || arg.is_none() => (true, 1.0),
        // No sampler named but a ratio given: the ratio, parent-based.
        "parentbased_always_on" => (true, ratio()?),
        "parentbased_always_off" => (true, 0.0),
        "parentbased_traceidratio" => (true, ratio()?),
        other => {
            return Err(format!(
                "OTEL_TRACES_SAMPLER={other:?}: use always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off or parentbased_traceidratio"
            ));
        }
    };
    Ok(Sampling {
        parent_based,
        ratio,
    })
}

fn timeout_from_env(var: &impl Fn(&str) -> Option<String>) -> Result<u64, String> {
    for name in [
        "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
        "OTEL_EXPORTER_OTLP_TIMEOUT",
    ] {
        if let Some(v) = var(name) {
            let ms: u64 = v
                .trim()
                .parse()
                .map_err(|_| format!("{name}={v:?}: not a number of milliseconds"))?;
            check_timeout(ms).map_err(|m| format!("{name}={v:?}: {m}"))?;
            return Ok(ms);
        }
    }
    Ok(DEFAULT_TIMEOUT_MS)
}

/// `key=value,key2=value2` (values may be percent-encoded).
fn parse_headers(name: &str, text: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for pair in text.split(',').filter(|p| !p.trim().is_empty()) {
        let Some((key, value)) = pair.split_once('=') else {
            return Err(format!("{name}: `{pair}` is not `key=value`"));
        };
        let key = key.trim();
        let value = percent_decode(value.trim());
        if http::HeaderName::from_bytes(key.as_bytes()).is_err()
            || http::HeaderValue::from_str(&value).is_err()
        {
            return Err(format!("{name}: `{key}` is not a valid HTTP header"));
        }
        out.push((key.to_string(), value));
    }
    Ok(out)
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    #[test]
    fn no_endpoint_anywhere_means_no_export() {
        let none = TraceSettings::resolve(&TelemetryConfig::default(), env(&[])).unwrap();
        assert_eq!(none, None);
        let sampler_only = env(&[("OTEL_TRACES_SAMPLER_ARG", "0.5")]);
        assert_eq!(
            TraceSettings::resolve(&TelemetryConfig::default(), sampler_only).unwrap(),
            None
        );
    }

    #[test]
    fn endpoints_get_the_traces_path_as_the_specification_says() {
        let config = |url: &str| TelemetryConfig {
            otlp_endpoint: Some(url.into()),
            ..TelemetryConfig::default()
        };
        let resolve = |c: TelemetryConfig, e: &[(&str, &str)]| {
            TraceSettings::resolve(&c, env(e))
                .unwrap()
                .unwrap()
                .endpoint
        };
        let default = TelemetryConfig::default;
        assert_eq!(
            resolve(config("http://127.0.0.1:4318"), &[]),
            "http://127.0.0.1:4318/v1/traces"
        );
        assert_eq!(
            resolve(config("http://c:4318/"), &[]),
            "http://c:4318/v1/traces"
        );
        assert_eq!(
            resolve(config("http://c:4318/otlp/v1/traces"), &[]),
            "http://c:4318/otlp/v1/traces"
        );
        let base = [("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318/otlp/")];
        assert_eq!(resolve(default(), &base), "http://c:4318/otlp/v1/traces");
        let both = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a:4318"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://b:4318/spans"),
        ];
        assert_eq!(resolve(default(), &both), "http://b:4318/spans");
        // The config file's key wins over the variables.
        assert_eq!(
            resolve(config("http://f:4318"), &both),
            "http://f:4318/v1/traces"
        );
    }

    #[test]
    fn bad_endpoints_are_refused_naming_where_they_came_from() {
        for (url, says) in [
            ("https://collector:4318", "https is not supported"),
            ("collector:4318", "write an http:// URL"),
            ("http://", "write an http:// URL"),
            ("http://u:p@c:4318", "write an http:// URL"),
            ("http://c:4318/v1/traces?x=1", "no query"),
            ("http://c:99999", "write an http:// URL"),
        ] {
            let c = TelemetryConfig {
                otlp_endpoint: Some(url.into()),
                ..TelemetryConfig::default()
            };
            let (key, message) = c.check().unwrap_err();
            assert_eq!(key, "otlp_endpoint");
            assert!(message.contains(says), "{url}: {message}");
            let e = env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", url)]);
            let err = TraceSettings::resolve(&TelemetryConfig::default(), e).unwrap_err();
            assert!(err.starts_with("OTEL_EXPORTER_OTLP_ENDPOINT="), "{err}");
        }
    }

    #[test]
    fn sampling_follows_the_file_then_the_standard_variables() {
        let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318");
        let sampling = |c: &TelemetryConfig, e: &[(&str, &str)]| {
            let mut vars = e.to_vec();
            vars.push(endpoint);
            TraceSettings::resolve(c, env(&vars)).map(|s| s.unwrap().sampling)
        };
        let default = TelemetryConfig::default();
        let pb = |ratio| Sampling {
            parent_based: true,
            ratio,
        };
        assert_eq!(sampling(&default, &[]).unwrap(), pb(1.0));
        assert_eq!(
            sampling(&default, &[("OTEL_TRACES_SAMPLER_ARG", "0.25")]).unwrap(),
            pb(0.25)
        );
        let ratio = [
            ("OTEL_TRACES_SAMPLER", "traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.1"),
        ];
        assert_eq!(
            sampling(&default, &ratio).unwrap(),
            Sampling {
                parent_based: false,
                ratio: 0.1
            }
        );
        assert_eq!(
            sampling(
                &default,
                &[("OTEL_TRACES_SAMPLER", "parentbased_always_off")]
            )
            .unwrap(),
            pb(0.0)
        );
        let file = TelemetryConfig {
            sample_ratio: Some(0.01),
            ..TelemetryConfig::default()
        };
        assert_eq!(sampling(&file, &ratio).unwrap(), pb(0.01));
        let err = sampling(&default, &[("OTEL_TRACES_SAMPLER_ARG", "2")]).unwrap_err();
        assert!(
            err.contains("OTEL_TRACES_SAMPLER_ARG") && err.contains("0.0"),
            "{err}"
        );
        let err = sampling(&default, &[("OTEL_TRACES_SAMPLER", "jaeger_remote")]).unwrap_err();
        assert!(err.contains("parentbased_traceidratio"), "{err}");
        let bad = TelemetryConfig {
            sample_ratio: Some(-0.5),
            ..TelemetryConfig::default()
        };
        assert_eq!(bad.check().unwrap_err().0, "sample_ratio");
    }

    #[test]
    fn protocol_timeout_headers_and_the_kill_switch() {
        let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318");
        let resolve = |e: &[(&str, &str)]| {
            let mut vars = e.to_vec();
            vars.push(endpoint);
            TraceSettings::resolve(&TelemetryConfig::default(), env(&vars))
        };
        let err = resolve(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]).unwrap_err();
        assert!(err.contains("http/protobuf"), "{err}");
        assert_eq!(resolve(&[("OTEL_SDK_DISABLED", "true")]).unwrap(), None);
        let s = resolve(&[
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "api-key=a%20b, x-tenant=t1"),
            ("OTEL_SERVICE_NAME", "orders-host"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(s.timeout_ms, 2500);
        assert_eq!(s.service_name, "orders-host");
        assert_eq!(
            s.headers,
            [
                ("api-key".to_string(), "a b".to_string()),
                ("x-tenant".into(), "t1".into())
            ]
        );
        assert!(resolve(&[("OTEL_EXPORTER_OTLP_TIMEOUT", "soon")]).is_err());
        assert!(resolve(&[("OTEL_EXPORTER_OTLP_HEADERS", "novalue")]).is_err());
    }
}
