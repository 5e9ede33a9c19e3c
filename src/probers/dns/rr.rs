//! The dns prober's resource-record checks: the `validate_*_rrs` options, compiled once at load,
//! and RRs in miekg/dns's presentation format, which the regexps match.

use crate::diag::FieldError;
use hickory_proto::rr::{DNSClass, RData, Record, RecordType};
use regex::Regex;
use serde::{Deserialize, Serialize};

/// Regexp checks on one section of the response; each RR is matched in its presentation form
/// (`name<TAB>ttl<TAB>class<TAB>type<TAB>rdata`, as miekg/dns prints it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RrValidator {
    /// Fail if any RR matches any of these.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fail_if_matches_regexp: Vec<String>,
    /// Fail if any RR does not match one of these (also when there are no RRs).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fail_if_not_matches_regexp: Vec<String>,
    /// Named so, but blackbox fails the probe when *not* every RR matches all of these.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fail_if_all_match_regexp: Vec<String>,
    /// Fail if no RR matches one of these (also when there are no RRs).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fail_if_none_matches_regexp: Vec<String>,
}

impl RrValidator {
    /// Compiles the four lists; an error names the field (`dns.{section}.{field}: ...`).
    pub(super) fn compile(&self, section: &str) -> Result<Rules, FieldError> {
        let compile = |field: &str, list: &[String]| -> Result<Vec<Regex>, FieldError> {
            list.iter()
                .map(|re| {
                    Regex::new(re).map_err(|e| {
                        FieldError::new(
                            format!("dns.{section}.{field}"),
                            format!("invalid regexp `{re}`: {e}"),
                        )
                    })
                })
                .collect()
        };
        Ok(Rules {
            fail_matches: compile("fail_if_matches_regexp", &self.fail_if_matches_regexp)?,
            fail_not: compile(
                "fail_if_not_matches_regexp",
                &self.fail_if_not_matches_regexp,
            )?,
            fail_all: compile("fail_if_all_match_regexp", &self.fail_if_all_match_regexp)?,
            fail_none: compile(
                "fail_if_none_matches_regexp",
                &self.fail_if_none_matches_regexp,
            )?,
        })
    }
}

/// An [`RrValidator`] with its regexps compiled.
#[derive(Debug, Clone, Default)]
pub(super) struct Rules {
    fail_matches: Vec<Regex>,
    fail_not: Vec<Regex>,
    fail_all: Vec<Regex>,
    fail_none: Vec<Regex>,
}

impl Rules {
    /// blackbox's `validRRs`: the four regexp checks over one section; `Err` says which failed.
    pub(super) fn check(&self, rrs: &[String]) -> Result<(), String> {
        if rrs.is_empty() && !self.fail_not.is_empty() {
            return Err("fail_if_not_matches_regexp specified but no RRs returned".into());
        }
        if rrs.is_empty() && !self.fail_none.is_empty() {
            return Err("fail_if_none_matches_regexp specified but no RRs returned".into());
        }
        let mut all_match = true;
        let mut any_match = false;
        for rr in rrs {
            if let Some(re) = self.fail_matches.iter().find(|re| re.is_match(rr)) {
                return Err(format!("at least one RR matched regexp `{re}`: {rr}"));
            }
            if self.fail_all.iter().any(|re| !re.is_match(rr)) {
                all_match = false;
            }
            if let Some(re) = self.fail_not.iter().find(|re| !re.is_match(rr)) {
                return Err(format!("at least one RR did not match regexp `{re}`: {rr}"));
            }
            if self.fail_none.iter().any(|re| re.is_match(rr)) {
                any_match = true;
            }
        }
        // Despite its name, blackbox fails `fail_if_all_match_regexp` when *not* every RR
        // matches (0.23 and upstream alike); dashboards and alerts rely on that, so keep it.
        if !self.fail_all.is_empty() && !all_match {
            return Err("not all RRs matched regexp".into());
        }
        if !self.fail_none.is_empty() && !any_match {
            return Err("none of the RRs matched any regexp".into());
        }
        Ok(())
    }
}

/// An RR in miekg/dns's presentation format: `name\tttl\tclass\ttype\trdata`.
pub(crate) fn rr_string(r: &Record) -> String {
    let class = match r.dns_class() {
        DNSClass::IN => "IN".to_string(),
        DNSClass::CH => "CH".to_string(),
        DNSClass::HS => "HS".to_string(),
        DNSClass::NONE => "NONE".to_string(),
        DNSClass::ANY => "ANY".to_string(),
        other => format!("CLASS{}", u16::from(other)),
    };
    let rtype = match r.record_type() {
        RecordType::Unknown(n) => format!("TYPE{n}"),
        t => t.to_string(),
    };
    let rdata = match r.data() {
        RData::A(a) => a.0.to_string(),
        RData::AAAA(a) => a.0.to_string(),
        RData::CNAME(n) => n.0.to_string(),
        RData::NS(n) => n.0.to_string(),
        RData::PTR(n) => n.0.to_string(),
        RData::MX(mx) => format!("{} {}", mx.preference(), mx.exchange()),
        RData::SRV(srv) => format!(
            "{} {} {} {}",
            srv.priority(),
            srv.weight(),
            srv.port(),
            srv.target()
        ),
        RData::SOA(soa) => format!(
            "{} {} {} {} {} {} {}",
            soa.mname(),
            soa.rname(),
            soa.serial(),
            soa.refresh(),
            soa.retry(),
            soa.expire(),
            soa.minimum()
        ),
        RData::TXT(txt) => txt
            .txt_data()
            .iter()
            .map(|s| go_txt(s))
            .collect::<Vec<_>>()
            .join(" "),
        other => other.to_string(),
    };
    format!("{}\t{}\t{class}\t{rtype}\t{rdata}", r.name(), r.ttl())
}

/// One TXT string as miekg/dns quotes it.
fn go_txt(s: &[u8]) -> String {
    let mut out = String::from("\"");
    for &b in s {
        match b {
            b'"' | b'\\' => {
                out.push('\\');
                out.push(char::from(b));
            }
            0x20..=0x7e => out.push(char::from(b)),
            _ => out.push_str(&format!("\\{b:03}")),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rrs(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn check(rrs: &[String], f: fn(&mut RrValidator)) -> Result<(), String> {
        let mut v = RrValidator::default();
        f(&mut v);
        v.compile("validate_answer_rrs")
            .expect("valid regexps")
            .check(rrs)
    }

    #[test]
    fn validators_follow_blackbox_including_its_all_match_quirk() {
        let two = rrs(&["a.\t1\tIN\tA\t192.0.2.1", "a.\t1\tIN\tA\t192.0.2.2"]);
        assert!(check(&two, |v| v.fail_if_matches_regexp = vec!["\\.2$".into()]).is_err());
        assert!(check(&two, |v| v.fail_if_not_matches_regexp =
            vec!["\\.1$".into()])
        .is_err());
        // Fails unless every RR matches.
        assert!(check(&two, |v| v.fail_if_all_match_regexp = vec!["192".into()]).is_ok());
        assert!(check(&two, |v| v.fail_if_all_match_regexp = vec!["\\.1$".into()]).is_err());
        assert!(check(&two, |v| v.fail_if_none_matches_regexp =
            vec!["\\.3$".into()])
        .is_err());
        assert!(check(&[], |v| v.fail_if_none_matches_regexp = vec![".".into()]).is_err());
        assert!(check(&[], |v| v.fail_if_not_matches_regexp = vec![".".into()]).is_err());
        assert!(check(&[], |v| v.fail_if_all_match_regexp = vec![".".into()]).is_ok());
    }

    #[test]
    fn invalid_regexps_name_the_section_and_field() {
        let v = RrValidator {
            fail_if_none_matches_regexp: vec!["(".into()],
            ..RrValidator::default()
        };
        let e = v.compile("validate_additional_rrs").unwrap_err();
        assert_eq!(
            e.field,
            "dns.validate_additional_rrs.fail_if_none_matches_regexp"
        );
    }

    #[test]
    fn txt_strings_are_quoted_like_miekg() {
        assert_eq!(go_txt(b"a \"b\"\\"), "\"a \\\"b\\\"\\\\\"");
        assert_eq!(go_txt(&[0x01, b'x']), "\"\\001x\"");
    }
}
