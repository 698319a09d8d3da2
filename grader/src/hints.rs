//! Hints for students who are stuck, one per check, shown under a failed
//! check and by `grader hint LAB CHECK`.
//!
//! They live in `grader/hints/*.txt`, one file per lab plus the files shared
//! by several labs, so that a hint is reviewed like prose, not like code:
//!
//! ```text
//! ## check_name
//! What the check does, the usual cause of failure, where to look in
//! {handout} ({api} is the lab's readiness call).
//! ```

/// The hint files, by name.
const FILES: &[(&str, &str)] = &[
    ("echo", include_str!("../hints/echo.txt")),
    ("epoll", include_str!("../hints/epoll.txt")),
    (
        "nonblocking_read",
        include_str!("../hints/nonblocking_read.txt"),
    ),
    ("select_telnet", include_str!("../hints/select_telnet.txt")),
    ("timeouts", include_str!("../hints/timeouts.txt")),
];

/// The files a lab's hints come from, most specific first.
fn sources(lab: &str) -> Vec<&'static str> {
    let shared: &[&str] = match lab {
        "poll_echo" | "timeouts" => &["echo"],
        "epoll_lt" | "epoll_et" => &["epoll", "echo"],
        _ => &[],
    };
    let mut names: Vec<&'static str> = FILES
        .iter()
        .map(|(name, _)| *name)
        .filter(|name| *name == lab)
        .collect();
    names.extend(shared);
    names
}

/// The readiness call a lab's hints talk about.
fn api(lab: &str) -> &'static str {
    match lab {
        "poll_echo" => "poll",
        "epoll_lt" | "epoll_et" | "timeouts" => "epoll_wait",
        "select_telnet" => "select",
        _ => "read",
    }
}

/// The hint for `check` of `lab`, with `{handout}` and `{api}` filled in.
pub fn hint(lab: &str, check: &str) -> Option<String> {
    sources(lab).into_iter().find_map(|name| {
        let text = FILES.iter().find(|(n, _)| *n == name)?.1;
        find(text, check).map(|hint| {
            hint.replace("{handout}", &format!("docs/labs/{lab}.md"))
                .replace("{api}", api(lab))
        })
    })
}

/// The section `## check` of a hint file, its lines joined.
fn find(text: &str, check: &str) -> Option<String> {
    let mut lines = text.lines().skip_while(|line| {
        line.strip_prefix("## ")
            .is_none_or(|name| name.trim() != check)
    });
    lines.next()?;
    let body: Vec<&str> = lines
        .take_while(|line| !line.starts_with("## "))
        .filter(|line| !line.starts_with('#'))
        .map(str::trim)
        .collect();
    let body = body.join("\n").trim().to_string();
    (!body.is_empty()).then_some(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_are_found_and_comments_skipped() {
        let text = "# comment\n## a\nfirst line\n# note to self\nsecond {api}\n\n## b\nother\n";
        assert_eq!(find(text, "a").unwrap(), "first line\nsecond {api}");
        assert_eq!(find(text, "b").unwrap(), "other");
        assert_eq!(find(text, "c"), None);
    }

    #[test]
    fn every_check_of_every_lab_has_a_hint() {
        let missing: Vec<String> = crate::labs::all()
            .iter()
            .flat_map(|lab| {
                lab.checks
                    .iter()
                    .filter(|check| hint(lab.name, check.name).is_none())
                    .map(|check| format!("{}/{}", lab.name, check.name))
                    .collect::<Vec<_>>()
            })
            .collect();
        assert!(missing.is_empty(), "checks without a hint: {missing:?}");
    }

    #[test]
    fn placeholders_are_filled() {
        for lab in crate::labs::all() {
            for check in &lab.checks {
                if let Some(hint) = hint(lab.name, check.name) {
                    assert!(
                        !hint.contains("{handout}") && !hint.contains("{api}"),
                        "{}/{}: {hint}",
                        lab.name,
                        check.name
                    );
                }
            }
        }
    }
}
