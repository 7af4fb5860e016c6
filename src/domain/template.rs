//! `{placeholder}` templates (exec argument vectors, principal templates),
//! filled in one pass: the template is scanned once, left to right, and each
//! value is inserted as it is. A value is never scanned again, so text in one
//! value (a principal `x{target}y`) can never be read as a placeholder.

/// Fill the `{name}` placeholders of `template` with `value(name)`.
/// `Ok(None)` leaves an unknown placeholder as written; an error stops.
pub fn fill<E>(
    template: &str,
    mut value: impl FnMut(&str) -> Result<Option<String>, E>,
) -> Result<String, E> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let Some(close) = after
            .find(['}', '{'])
            .filter(|&i| after.as_bytes()[i] == b'}')
        else {
            // No closing brace before the next opening one: a literal `{`.
            out.push('{');
            rest = after;
            continue;
        };
        let name = &after[..close];
        match value(name)? {
            Some(filled) => out.push_str(&filled),
            None => {
                out.push('{');
                out.push_str(name);
                out.push('}');
            }
        }
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fill_with(template: &str, pairs: &[(&str, &str)]) -> String {
        fill::<()>(template, |name| {
            Ok(pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string()))
        })
        .unwrap()
    }

    #[test]
    fn values_are_never_read_as_placeholders() {
        let pairs = [("principal", "x{target}y"), ("target", "exec_role")];
        assert_eq!(
            fill_with("{principal} {target}", &pairs),
            "x{target}y exec_role"
        );
        assert_eq!(
            fill_with("{target}{principal}", &pairs),
            "exec_rolex{target}y"
        );
    }

    #[test]
    fn unknown_placeholders_and_stray_braces_stay_as_written() {
        let pairs = [("a", "1")];
        assert_eq!(fill_with("{a}-{b}-{", &pairs), "1-{b}-{");
        assert_eq!(fill_with("{{a}}", &pairs), "{1}");
        assert_eq!(fill_with("}{a", &pairs), "}{a");
    }

    #[test]
    fn an_error_stops_the_fill() {
        let result = fill("{a}{b}", |name| match name {
            "a" => Ok(Some("1".to_string())),
            _ => Err(format!("no {name}")),
        });
        assert_eq!(result, Err("no b".to_string()));
    }
}
