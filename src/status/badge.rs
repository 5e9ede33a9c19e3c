//! Badges: a component's state and uptime as SVG in the flat style shields.io draws, and as a
//! shields.io endpoint (`schemaVersion 1`) for those who let shields draw them.

use serde::Serialize;

use super::model::State;

/// A badge's colour, as shields.io names it and as drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Colour {
    /// All good.
    BrightGreen,
    /// Good.
    Green,
    /// A little wrong.
    Yellow,
    /// Wrong.
    Orange,
    /// Down.
    Red,
    /// Maintenance.
    Blue,
    /// Nothing known.
    LightGrey,
}

impl Colour {
    /// shields.io's name.
    pub fn name(self) -> &'static str {
        match self {
            Colour::BrightGreen => "brightgreen",
            Colour::Green => "green",
            Colour::Yellow => "yellow",
            Colour::Orange => "orange",
            Colour::Red => "red",
            Colour::Blue => "blue",
            Colour::LightGrey => "lightgrey",
        }
    }

    /// shields.io's hex value.
    pub fn hex(self) -> &'static str {
        match self {
            Colour::BrightGreen => "#4c1",
            Colour::Green => "#97ca00",
            Colour::Yellow => "#dfb317",
            Colour::Orange => "#fe7d37",
            Colour::Red => "#e05d44",
            Colour::Blue => "#007ec6",
            Colour::LightGrey => "#9f9f9f",
        }
    }

    /// The colour of a state.
    pub fn of_state(s: State) -> Colour {
        match s {
            State::Unknown => Colour::LightGrey,
            State::Operational => Colour::BrightGreen,
            State::Maintenance => Colour::Blue,
            State::Degraded => Colour::Yellow,
            State::Partial => Colour::Orange,
            State::Major => Colour::Red,
        }
    }

    /// The colour of an uptime (a fraction), grey when unknown.
    pub fn of_uptime(u: Option<f64>) -> Colour {
        match u {
            None => Colour::LightGrey,
            Some(u) if u >= 0.999 => Colour::BrightGreen,
            Some(u) if u >= 0.99 => Colour::Green,
            Some(u) if u >= 0.97 => Colour::Yellow,
            Some(u) if u >= 0.95 => Colour::Orange,
            Some(_) => Colour::Red,
        }
    }
}

/// A badge: what the left and right halves say and the right half's colour.
#[derive(Debug, Clone, PartialEq)]
pub struct Badge {
    /// Left half.
    pub label: String,
    /// Right half.
    pub message: String,
    /// Right half's colour.
    pub colour: Colour,
}

/// shields.io's endpoint schema.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Shields {
    /// Always 1.
    pub schema_version: u8,
    /// Left half.
    pub label: String,
    /// Right half.
    pub message: String,
    /// A shields.io colour name.
    pub color: &'static str,
}

impl Badge {
    /// A component's state badge.
    pub fn state(name: &str, s: State) -> Badge {
        Badge {
            label: name.to_string(),
            message: s.label().to_lowercase(),
            colour: Colour::of_state(s),
        }
    }

    /// A component's uptime badge over `span` (`24h`, `7d`, ...).
    pub fn uptime(span: &str, u: Option<f64>) -> Badge {
        Badge {
            label: format!("uptime {span}"),
            message: u.map(percent).unwrap_or_else(|| "no data".to_string()),
            colour: Colour::of_uptime(u),
        }
    }

    /// The shields.io endpoint document.
    pub fn shields(&self) -> Shields {
        Shields {
            schema_version: 1,
            label: self.label.clone(),
            message: self.message.clone(),
            color: self.colour.name(),
        }
    }

    /// The badge as SVG (flat style), its text escaped.
    pub fn svg(&self) -> String {
        let (lw, mw) = (text_width(&self.label) + 10, text_width(&self.message) + 10);
        let w = lw + mw;
        let (label, message) = (xml_escape(&self.label), xml_escape(&self.message));
        let (lx, mx) = (lw * 5, lw * 10 + mw * 5);
        let (ltl, mtl) = ((lw - 10) * 10, (mw - 10) * 10);
        format!(
            r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="20" role="img" aria-label="{label}: {message}"><title>{label}: {message}</title><linearGradient id="s" x2="0" y2="100%"><stop offset="0" stop-color="#bbb" stop-opacity=".1"/><stop offset="1" stop-opacity=".1"/></linearGradient><clipPath id="r"><rect width="{w}" height="20" rx="3" fill="#fff"/></clipPath><g clip-path="url(#r)"><rect width="{lw}" height="20" fill="#555"/><rect x="{lw}" width="{mw}" height="20" fill="{colour}"/><rect width="{w}" height="20" fill="url(#s)"/></g><g fill="#fff" text-anchor="middle" font-family="Verdana,Geneva,DejaVu Sans,sans-serif" text-rendering="geometricPrecision" font-size="110"><text aria-hidden="true" x="{lx}" y="150" fill="#010101" fill-opacity=".3" transform="scale(.1)" textLength="{ltl}">{label}</text><text x="{lx}" y="140" transform="scale(.1)" fill="#fff" textLength="{ltl}">{label}</text><text aria-hidden="true" x="{mx}" y="150" fill="#010101" fill-opacity=".3" transform="scale(.1)" textLength="{mtl}">{message}</text><text x="{mx}" y="140" transform="scale(.1)" fill="#fff" textLength="{mtl}">{message}</text></g></svg>"##,
            colour = self.colour.hex(),
        )
    }
}

/// A fraction as a percentage with up to three decimals (`99.95%`, `100%`).
pub fn percent(u: f64) -> String {
    let p = format!("{:.3}", u * 100.0);
    let p = p.trim_end_matches('0').trim_end_matches('.');
    format!("{p}%")
}

/// The width in pixels of `s` at Verdana 11px, close enough: per-character widths of the
/// common classes of characters.
fn text_width(s: &str) -> usize {
    let tenths: usize = s
        .chars()
        .map(|c| match c {
            'i' | 'j' | 'l' | '.' | ',' | ':' | ';' | '\'' | '!' | '|' => 35,
            'f' | 'r' | 't' | ' ' | '(' | ')' | '[' | ']' | '-' | '/' => 50,
            'm' | 'w' | 'M' | 'W' | '%' | '@' => 105,
            c if c.is_ascii_uppercase() || c.is_ascii_digit() => 75,
            c if c.is_ascii() => 68,
            _ => 100,
        })
        .sum();
    tenths.div_ceil(10)
}

/// `s` with XML's special characters escaped (text and attribute values alike).
pub fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Control characters are not allowed in XML 1.0.
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn svg_is_well_formed_with_hostile_text_escaped() {
        let b = Badge::state("<script>&\"x'\u{1}", State::Major);
        let svg = b.svg();
        let doc = roxmltree::Document::parse(&svg).expect("well-formed SVG");
        assert_eq!(doc.root_element().tag_name().name(), "svg");
        let title = doc
            .descendants()
            .find(|n| n.has_tag_name("title"))
            .and_then(|n| n.text())
            .expect("title");
        assert_eq!(title, "<script>&\"x'\u{fffd}: major outage");
        assert!(!svg.contains("<script>"));
    }

    #[test]
    fn uptime_badge_and_shields_endpoint() {
        let b = Badge::uptime("30d", Some(0.99951));
        assert_eq!(b.message, "99.951%");
        assert_eq!(b.colour, Colour::BrightGreen);
        let j = serde_json::to_value(b.shields()).expect("json");
        assert_eq!(j["schemaVersion"], 1);
        assert_eq!(j["label"], "uptime 30d");
        assert_eq!(j["color"], "brightgreen");
        assert_eq!(Badge::uptime("24h", None).message, "no data");
        assert_eq!(percent(1.0), "100%");
        assert_eq!(percent(0.5), "50%");
    }
}
