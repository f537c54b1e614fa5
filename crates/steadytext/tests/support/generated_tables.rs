//! README.md's generated tables: rendered from their declarations (the GUCs from `pg_settings`,
//! the flags from clap through `steadytext reference flags`) and kept between
//! `<!-- generated: NAME -->` and `<!-- end generated: NAME -->` markers.

/// Environment variable that makes the README test rewrite the marked regions.
pub const UPDATE_ENV: &str = "STEADYTEXT_UPDATE_README";

/// The table of every `serve` / `worker` flag, as `steadytext reference flags` prints it.
pub fn flags_table() -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_steadytext"))
        .args(["reference", "flags"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// The table of every `steadytext.*` setting, from `pg_settings` of a database where the
/// library is loaded: setting | default | range | who may set | meaning.
pub fn guc_table(db: &mut postgres::Client) -> String {
    let rows = db
        .query(
            "SELECT name, vartype, coalesce(boot_val, ''), coalesce(unit, ''), min_val, max_val, enumvals,
                    context, coalesce(short_desc, '')
             FROM pg_settings WHERE name LIKE 'steadytext.%' ORDER BY name",
            &[],
        )
        .unwrap();
    let mut out = String::from(
        "| setting | default | range | who may set | meaning |\n|---|---|---|---|---|\n",
    );
    for r in rows {
        let name: String = r.get(0);
        let vartype: String = r.get(1);
        let boot: String = r.get(2);
        let unit: String = r.get(3);
        let (min, max): (Option<String>, Option<String>) = (r.get(4), r.get(5));
        let enumvals: Option<Vec<String>> = r.get(6);
        let context: String = r.get(7);
        let desc: String = r.get(8);
        let default = match vartype.as_str() {
            "string" if boot.is_empty() => "empty".to_owned(),
            "integer" | "real" => format!("`{}`", with_unit(&boot, &unit)),
            _ => format!("`{boot}`"),
        };
        let range = match (vartype.as_str(), min, max, enumvals) {
            ("integer" | "real", Some(min), Some(max), _) => {
                format!("{}–{}", with_unit(&min, &unit), with_unit(&max, &unit))
            }
            ("enum", _, _, Some(values)) => {
                values.iter().map(|v| format!("`{v}`")).collect::<Vec<_>>().join(", ")
            }
            ("bool", ..) => "`on`, `off`".to_owned(),
            _ => String::new(),
        };
        out.push_str(&format!(
            "| `{name}` | {default} | {range} | {} | {} |\n",
            who_may_set(&context),
            desc.replace('|', "\\|")
        ));
    }
    out
}

/// A value with its unit as one would write it in `SET`: `2000`+`ms` is `2s`.
fn with_unit(value: &str, unit: &str) -> String {
    match (unit, value.parse::<i64>()) {
        ("ms", Ok(ms)) if ms != 0 && ms % 1000 == 0 => format!("{}s", ms / 1000),
        _ => format!("{value}{unit}"),
    }
}

/// Who may change a setting of the given `pg_settings.context`, and how.
fn who_may_set(context: &str) -> String {
    match context {
        "user" => "anyone (`SET`)".to_owned(),
        "superuser" => "superuser (`SET`)".to_owned(),
        "sighup" => "configuration (`ALTER SYSTEM`, then reload)".to_owned(),
        "postmaster" => "configuration (`ALTER SYSTEM`, then restart)".to_owned(),
        "backend" | "superuser-backend" => format!("{context}, at connection start"),
        "internal" => "nobody (read-only)".to_owned(),
        other => other.to_owned(),
    }
}

/// The byte range of the text between the markers of region `name`, or why there is none.
fn region(readme: &str, name: &str) -> Result<std::ops::Range<usize>, String> {
    let begin = format!("<!-- generated: {name} -->\n");
    let end = format!("<!-- end generated: {name} -->");
    let start =
        readme.find(&begin).ok_or_else(|| format!("README.md has no line {begin}"))? + begin.len();
    let stop = readme[start..]
        .find(&end)
        .ok_or_else(|| format!("README.md has no {end} after <!-- generated: {name} -->"))?
        + start;
    Ok(start..stop)
}

/// Checks that region `name` of `readme` is exactly `table`. With [`UPDATE_ENV`]`=1` it is
/// rewritten instead (and `Ok` returned); otherwise a mismatch is an error showing the
/// differing lines and how to regenerate.
pub fn sync_region(readme: &mut String, name: &str, table: &str) -> Result<(), String> {
    let range = region(readme, name)?;
    if readme[range.clone()] == *table {
        return Ok(());
    }
    if std::env::var(UPDATE_ENV).as_deref() == Ok("1") {
        readme.replace_range(range, table);
        return Ok(());
    }
    Err(format!(
        "README.md: the generated {name} table is out of date (- README, + generated):\n{}\n\
         Regenerate it with `cargo pgrx install` (in extension/) and then\n  \
         {UPDATE_ENV}=1 cargo test -p steadytext --features integration --test pg_readme\n\
         and review the change to README.md before committing it.",
        line_diff(&readme[range], table)
    ))
}

/// The lines of `old` and `new` that differ, `-`/`+` prefixed (a longest-common-subsequence
/// diff; unchanged lines are left out).
fn line_diff(old: &str, new: &str) -> String {
    let (a, b): (Vec<&str>, Vec<&str>) = (old.lines().collect(), new.lines().collect());
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] =
                if a[i] == b[j] { lcs[i + 1][j + 1] + 1 } else { lcs[i + 1][j].max(lcs[i][j + 1]) };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            (i, j) = (i + 1, j + 1);
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            out.push(format!("- {}", a[i]));
            i += 1;
        } else {
            out.push(format!("+ {}", b[j]));
            j += 1;
        }
    }
    out.join("\n")
}
