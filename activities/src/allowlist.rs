//! Host allowlists for URLs that come from payloads (webhooks, http inputs): an SSRF guard.

/// Rules are host names (`api.example.com`) or `*.example.com` for any subdomain, each
/// optionally with a port (`media.example.com:8443`, `[::1]:9000`): a rule with a port allows
/// only that port (a URL without one has its scheme's, 80 or 443), a rule without allows any.
/// Matching is case-insensitive and ignores a trailing dot.
pub fn parse_rules(list: &str) -> Vec<String> {
    list.split(',')
        .map(|h| h.trim().trim_end_matches('.').to_ascii_lowercase())
        .filter(|h| !h.is_empty())
        .collect()
}

/// Whether `url` names a host (and port) that `rules` allow.
pub fn allows(rules: &[String], url: &str) -> bool {
    let Ok(parsed) = url::Url::parse(url) else {
        return false;
    };
    let Some(host) = parsed
        .host_str()
        .map(|h| h.trim_end_matches('.').to_ascii_lowercase())
    else {
        return false;
    };
    let port = parsed.port_or_known_default();
    rules.iter().any(|rule| {
        let (rule_host, rule_port) = split_port(rule);
        rule_port.is_none_or(|p| Some(p) == port) && host_matches(rule_host, &host)
    })
}

/// `host:port` → (`host`, `Some(port)`); a rule without a port (or an unbracketed IPv6
/// address, whose colons are not a port) → (`rule`, `None`).
fn split_port(rule: &str) -> (&str, Option<u16>) {
    if let Some((host, port)) = rule.rsplit_once(':') {
        let bracketed = host.starts_with('[') && host.ends_with(']');
        if let (Ok(port), true) = (port.parse::<u16>(), bracketed || !host.contains(':')) {
            return (host, Some(port));
        }
    }
    (rule, None)
}

fn host_matches(rule_host: &str, host: &str) -> bool {
    let rule_host = rule_host.trim_end_matches('.');
    match rule_host.strip_prefix("*.") {
        Some(domain) => host.ends_with(&format!(".{domain}")),
        None => host == rule_host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_and_wildcard() {
        let rules = parse_rules(" media.example.com, *.cdn.example.net ,");
        assert!(allows(&rules, "https://MEDIA.example.com./a.mp4"));
        assert!(allows(&rules, "https://eu.cdn.example.net/a.mp4"));
        assert!(!allows(&rules, "https://cdn.example.net/a.mp4"));
        assert!(!allows(&rules, "https://media.example.com.evil.org/a.mp4"));
        assert!(!allows(&rules, "http://169.254.169.254/latest/meta-data"));
        assert!(!allows(&rules, "not a url"));
    }

    #[test]
    fn a_rule_with_a_port_allows_only_that_port() {
        let rules = parse_rules(
            "media.example.com:8443, *.cdn.example.net:443, hooks.example.org, [::1]:9000",
        );
        assert!(allows(&rules, "https://media.example.com:8443/a.mp4"));
        assert!(
            !allows(&rules, "https://media.example.com/a.mp4"),
            "443 is not 8443"
        );
        assert!(
            !allows(&rules, "http://media.example.com:6379/"),
            "another port on the host"
        );
        assert!(
            allows(&rules, "https://eu.cdn.example.net/a.mp4"),
            "https's 443"
        );
        assert!(
            !allows(&rules, "http://eu.cdn.example.net/a.mp4"),
            "http's 80"
        );
        assert!(
            allows(&rules, "http://hooks.example.org:8080/h"),
            "no port in the rule: any"
        );
        assert!(allows(&rules, "http://[::1]:9000/h"));
        assert!(!allows(&rules, "http://[::1]:9001/h"));
    }
}
