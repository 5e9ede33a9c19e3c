//! The default messages: the runbook's own words, one title and one text per [`Kind`].
//!
//! They are minijinja templates over [`super::Facts`], compiled with `trim_blocks` and
//! `lstrip_blocks` (a line holding only a `{% ... %}` tag leaves nothing behind) and strict
//! undefined values. Optional facts are tested before they are shown, so a message without
//! them reads well. The filter `pct` writes a percentage with at most one decimal (`12.5`,
//! `100`).

use super::Kind;

/// The default (title, text) templates of `kind`.
pub fn template(kind: Kind) -> (&'static str, &'static str) {
    match kind {
        Kind::Declared => (DECLARED_TITLE, DECLARED_TEXT),
        Kind::Update => (UPDATE_TITLE, UPDATE_TEXT),
        Kind::Escalated => (ESCALATED_TITLE, ESCALATED_TEXT),
        Kind::Acknowledged => (ACKNOWLEDGED_TITLE, ACKNOWLEDGED_TEXT),
        Kind::Note => (NOTE_TITLE, NOTE_TEXT),
        Kind::StatusPage => (STATUS_PAGE_TITLE, STATUS_PAGE_TEXT),
        Kind::Resolved => (RESOLVED_TITLE, RESOLVED_TEXT),
        Kind::Test => (TEST_TITLE, TEST_TEXT),
    }
}

const DECLARED_TITLE: &str =
    "[{{ severity }}] MAJOR INCIDENT: {{ service }} is down ({{ failing_percent | pct }} % of probes failing)";

const DECLARED_TEXT: &str = "\
MAJOR INCIDENT DECLARED: {{ title }}
Service: {{ service }}
Severity: {{ severity }}
{% if commander %}
Incident commander: {{ commander }}
{% endif %}
Started: {{ started_text }}
Status: {{ status }}
Impact: {{ failing_percent | pct }} % of probes failing
{% if reason %}
Reason: {{ reason }}{% if detail %} ({{ detail }}){% endif %}

{% endif %}
{% if actions %}
Actions taken:
{% for a in actions %}
- {{ a }}
{% endfor %}
{% else %}
Actions taken: none yet
{% endif %}
{% if war_room %}
War room: {{ war_room }}
{% endif %}
{% if status_page %}
Status page: {{ status_page }}
{% endif %}
{% if next_update %}
Next update: {{ next_update }}
{% endif %}";

const UPDATE_TITLE: &str =
    "[{{ severity }}] UPDATE: {{ service }} is {{ status }} after {{ elapsed }}";

const UPDATE_TEXT: &str = "\
INCIDENT UPDATE: {{ title }}
Elapsed: {{ elapsed }} (since {{ started_text }})
Status: {{ status }}
{% if acknowledged %}
Acknowledged: {{ acknowledged }}
{% endif %}
{% if reason %}
Reason: {{ reason }}{% if detail %} ({{ detail }}){% endif %}

{% endif %}
{% if note %}
Latest from the team: {{ note }}
{% endif %}
{% if actions %}
Actions taken:
{% for a in actions %}
- {{ a }}
{% endfor %}
{% else %}
Actions taken: none yet
{% endif %}
Impact so far:
- {{ failing_percent | pct }} % of probes failing now
- failed probes: {{ failed_probes }}
{% if failed_requests is not none %}
- failed proxied requests: {{ failed_requests }}
{% endif %}
{% if estimated_failed_requests is not none %}
- estimated failed user requests: {{ estimated_failed_requests }}
{% endif %}
{% if next_update %}
Next update: {{ next_update }}
{% endif %}";

const ESCALATED_TITLE: &str =
    "[{{ severity }}] ESCALATION: {{ service }} down for {{ elapsed }}{% if tier %} ({{ tier }}){% endif %}";

const ESCALATED_TEXT: &str = "\
EXECUTIVE SUMMARY: {{ title }}
What: {{ service }} is down{% if reason %} ({{ reason }}){% endif %}

Since: {{ started_text }} ({{ elapsed }})
Status: {{ status }}
Impact: {{ failing_percent | pct }} % of probes failing, {{ failed_probes }} failed probes\
{% if estimated_failed_requests is not none %}, about {{ estimated_failed_requests }} failed user requests{% endif %}

{% if actions %}
Actions taken:
{% for a in actions %}
- {{ a }}
{% endfor %}
{% else %}
Actions taken: none yet
{% endif %}
{% if tier %}
Now informed: {{ tier }}
{% endif %}
{% if commander %}
Incident commander: {{ commander }}
{% endif %}
{% if war_room %}
War room: {{ war_room }}
{% endif %}
{% if next_update %}
Next update: {{ next_update }}
{% endif %}";

const ACKNOWLEDGED_TITLE: &str = "[{{ severity }}] ACKNOWLEDGED: {{ service }}";

const ACKNOWLEDGED_TEXT: &str = "\
{{ title }}: acknowledged{% if acknowledged %} ({{ acknowledged }}){% endif %}. Escalation stops.
Status: {{ status }}, {{ elapsed }} since {{ started_text }}
{% if commander %}
Incident commander: {{ commander }}
{% endif %}
{% if next_update %}
Next update: {{ next_update }}
{% endif %}";

const NOTE_TITLE: &str = "[{{ severity }}] {{ service }}: {{ status }}";

const NOTE_TEXT: &str = "\
{% if note %}
{{ note }}
{% else %}
Status changed.
{% endif %}
Status: {{ status }}, {{ elapsed }} since {{ started_text }}
{% if next_update %}
Next update: {{ next_update }}
{% endif %}";

const STATUS_PAGE_TITLE: &str = "Investigating: {{ service }}";

const STATUS_PAGE_TEXT: &str = "\
We are investigating an issue affecting {{ service }}. Some requests may fail or be slower \
than usual. We will post an update as soon as we know more\
{% if next_update %}, by {{ next_update }} at the latest{% endif %}.";

const RESOLVED_TITLE: &str =
    "[{{ severity }}] RESOLVED: {{ service }}{% if duration %} after {{ duration }}{% endif %}";

const RESOLVED_TEXT: &str = "\
RESOLVED: {{ service }} (incident #{{ id }}: {{ title }})
Duration: {% if duration %}{{ duration }}{% else %}{{ elapsed }}{% endif %} (from {{ started_text }})
{% if root_cause %}
Root cause: {{ root_cause }}
{% endif %}
{% if resolution %}
Resolution: {{ resolution }}
{% endif %}
Impact:
- failed probes: {{ failed_probes }}
{% if failed_requests is not none %}
- failed proxied requests: {{ failed_requests }}
{% endif %}
{% if estimated_failed_requests is not none %}
- estimated failed user requests: {{ estimated_failed_requests }}
{% endif %}
{% if affected_percent is not none %}
- affected share: {{ affected_percent | pct }} %
{% endif %}
{% if budget_consumed_percent is not none %}
- error budget consumed: {{ budget_consumed_percent | pct }} %
{% endif %}
{% if actions %}
Actions taken:
{% for a in actions %}
- {{ a }}
{% endfor %}
{% endif %}
{% if verify %}
Verification: {{ verify }}
{% endif %}";

const TEST_TITLE: &str = "watchfire test message";

const TEST_TEXT: &str = "\
This is a test message from watchfire (service {{ service }}, severity {{ severity }}). \
If you can read it, messages reach this receiver.";
