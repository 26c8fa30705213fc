//! Reading a password for `baton user add`: from stdin, or from a prompt on the terminal with
//! echo turned off.

use std::io::{BufRead, IsTerminal};

use anyhow::{Context, bail};

fn read_line() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("cannot read the password from stdin")?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

/// Reads a line from the terminal without echo (`rpassword` restores the terminal, also when
/// the read fails).
fn prompt(label: &str) -> anyhow::Result<String> {
    rpassword::prompt_password(label)
        .context("cannot read the password from the terminal (hint: use --password-stdin)")
}

pub(crate) fn read(from_stdin: bool) -> anyhow::Result<String> {
    let password = if from_stdin {
        read_line()?
    } else if std::io::stdin().is_terminal() {
        let a = prompt("password: ")?;
        let b = prompt("again: ")?;
        if a != b {
            bail!("the passwords differ");
        }
        a
    } else {
        bail!("stdin is not a terminal (hint: pass --password-stdin to read the password from it)");
    };
    if password.is_empty() {
        bail!("the password is empty");
    }
    Ok(password)
}
