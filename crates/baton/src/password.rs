//! Reading a password for `baton user add`: from stdin, or from a prompt on the terminal with
//! echo turned off.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::{Context, bail};

fn read_line() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("cannot read the password from stdin")?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

/// Reads a line from the terminal without echo; echo is restored even on error.
fn prompt(label: &str) -> anyhow::Result<String> {
    eprint!("{label}");
    std::io::stderr().flush().ok();
    // SAFETY: termios calls on stdin's descriptor with a zeroed struct filled by tcgetattr.
    let old = unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(0, &mut t) != 0 {
            bail!("cannot read the terminal settings (hint: use --password-stdin)");
        }
        let old = t;
        t.c_lflag &= !libc::ECHO;
        libc::tcsetattr(0, libc::TCSANOW, &t);
        old
    };
    let line = read_line();
    // SAFETY: restores the settings read above.
    unsafe {
        libc::tcsetattr(0, libc::TCSANOW, &old);
    }
    eprintln!();
    line
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
