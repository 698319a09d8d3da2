//! A small command-line parser: `--flag`, `--name VALUE`, `--name=VALUE` and
//! positional arguments. Every mistake ends the program with exit code 2.

use crate::usage_error;
use std::str::FromStr;

/// The command line, checked against the flags a program accepts.
pub struct Args {
    usage: &'static str,
    flags: Vec<(String, Option<String>)>,
    positional: Vec<String>,
}

impl Args {
    /// Parses `std::env::args()`. `value_flags` take a value, `bool_flags` do not.
    pub fn parse(usage: &'static str, value_flags: &[&str], bool_flags: &[&str]) -> Args {
        Args::parse_from(std::env::args().skip(1), usage, value_flags, bool_flags)
    }

    pub fn parse_from(
        args: impl IntoIterator<Item = String>,
        usage: &'static str,
        value_flags: &[&str],
        bool_flags: &[&str],
    ) -> Args {
        let mut parsed = Args {
            usage,
            flags: Vec::new(),
            positional: Vec::new(),
        };
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            if arg == "-h" || arg == "--help" {
                println!("usage: {} {usage}", crate::program_name());
                std::process::exit(0);
            }
            if arg == "--" {
                parsed.positional.extend(args.by_ref());
                break;
            }
            if !arg.starts_with('-') || arg == "-" {
                parsed.positional.push(arg);
                continue;
            }
            let (name, inline_value) = match arg.split_once('=') {
                Some((name, value)) => (name.to_string(), Some(value.to_string())),
                None => (arg.clone(), None),
            };
            if value_flags.contains(&name.as_str()) {
                let value = inline_value
                    .or_else(|| args.next())
                    .unwrap_or_else(|| usage_error(format!("{name} needs a value"), usage));
                parsed.flags.push((name, Some(value)));
            } else if bool_flags.contains(&name.as_str()) && inline_value.is_none() {
                parsed.flags.push((name, None));
            } else {
                usage_error(format!("unknown option '{arg}'"), usage);
            }
        }
        parsed
    }

    /// True if the boolean flag was given.
    pub fn flag(&self, name: &str) -> bool {
        self.flags.iter().any(|(flag, _)| flag == name)
    }

    /// The value of `name` (the last one given), parsed, or `default`.
    pub fn value<T: FromStr>(&self, name: &str, default: T) -> T {
        let Some(raw) = self
            .flags
            .iter()
            .rev()
            .find(|(flag, _)| flag == name)
            .and_then(|(_, value)| value.as_deref())
        else {
            return default;
        };
        raw.parse()
            .unwrap_or_else(|_| usage_error(format!("bad value for {name}: '{raw}'"), self.usage))
    }

    /// The positional arguments; exactly `min..=max` of them are allowed.
    pub fn positional(&self, min: usize, max: usize) -> &[String] {
        let n = self.positional.len();
        if n < min {
            usage_error("missing argument", self.usage);
        }
        if n > max {
            usage_error(
                format!("unexpected argument '{}'", self.positional[max]),
                self.usage,
            );
        }
        &self.positional
    }
}

/// The command line of the echo servers: `<bin> [--port PORT]`.
pub struct EchoArgs {
    pub port: u16,
}

impl EchoArgs {
    pub const USAGE: &'static str = "[--port PORT]";

    pub fn parse() -> EchoArgs {
        let args = Args::parse(Self::USAGE, &["--port"], &[]);
        args.positional(0, 0);
        EchoArgs {
            port: args.value("--port", 0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Args {
        Args::parse_from(
            args.iter().map(|s| s.to_string()),
            "[--port PORT] [--blocking] [PATH]",
            &["--port"],
            &["--blocking"],
        )
    }

    #[test]
    fn values_flags_and_positionals() {
        let args = parse(&["--port", "80", "--blocking", "file"]);
        assert_eq!(args.value("--port", 0u16), 80);
        assert!(args.flag("--blocking"));
        assert_eq!(args.positional(0, 1), ["file".to_string()]);
    }

    #[test]
    fn inline_value_and_defaults() {
        let args = parse(&["--port=81"]);
        assert_eq!(args.value("--port", 0u16), 81);
        assert!(!args.flag("--blocking"));
        assert_eq!(args.value("--retry-ms", 10u64), 10);
    }

    #[test]
    fn double_dash_ends_flags() {
        let args = parse(&["--", "--port"]);
        assert_eq!(args.positional(1, 1), ["--port".to_string()]);
    }
}
