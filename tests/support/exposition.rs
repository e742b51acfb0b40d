//! Reading samples out of a Prometheus text exposition (what `/metrics` answers), whatever the
//! order of the labels.

/// The value of the sample `name{labels}` with exactly these labels (in any order; `&[]` for a
/// sample without labels), if the exposition has it. `NaN` parses as NaN.
pub fn sample(exposition: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    exposition
        .lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (head, value) = line.rsplit_once(' ')?;
            let (metric, label_text) = match head.split_once('{') {
                Some((metric, rest)) => (metric, rest.strip_suffix('}')?),
                None => (head, ""),
            };
            if metric != name {
                return None;
            }
            let found: Vec<(&str, &str)> = label_text
                .split("\",")
                .filter(|pair| !pair.is_empty())
                .filter_map(|pair| {
                    let (key, value) = pair.split_once('=')?;
                    Some((key, value.trim_matches('"')))
                })
                .collect();
            let same = found.len() == labels.len() && labels.iter().all(|wanted| found.contains(wanted));
            same.then(|| value.parse().ok()).flatten()
        })
}

/// Every sample of `name` (with any labels), as its whole line.
pub fn lines_of<'a>(exposition: &'a str, name: &str) -> Vec<&'a str> {
    exposition
        .lines()
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .collect()
}
