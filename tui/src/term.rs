//! The terminal: raw mode and the alternate screen on, and back off on every
//! way out: a drop guard for returns and errors, a panic hook for panics
//! (the process may be unwinding from anywhere), and the main loop turns
//! SIGTERM/SIGHUP into a normal return.

use std::io::{self, Stdout};
use std::sync::Once;

use anyhow::Context;
use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::{cursor, execute, terminal};
use ratatui::Terminal;

/// The terminal type of the binary.
pub type Term = Terminal<CrosstermBackend<Stdout>>;

/// Restores the terminal when dropped.
#[derive(Debug)]
pub struct Guard {
    _private: (),
}

impl Drop for Guard {
    fn drop(&mut self) {
        restore();
    }
}

/// Put the terminal back: leave the alternate screen, show the cursor,
/// raw mode off. Safe to call more than once; errors are ignored (there is
/// nothing better to do on the way out).
pub fn restore() {
    let _ = execute!(io::stdout(), terminal::LeaveAlternateScreen, cursor::Show);
    let _ = terminal::disable_raw_mode();
}

static HOOK: Once = Once::new();

/// Install the panic hook that restores the terminal before the panic
/// message is printed (so the message is readable).
fn install_panic_hook() {
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            previous(info);
        }));
    });
}

/// Raw mode, alternate screen, hidden cursor; returns the terminal and the
/// guard that undoes it.
pub fn init() -> anyhow::Result<(Term, Guard)> {
    install_panic_hook();
    terminal::enable_raw_mode()
        .context("cannot put the terminal in raw mode (is stdin a terminal?)")?;
    // From here on the guard restores, whatever fails next.
    let guard = Guard { _private: () };
    execute!(io::stdout(), terminal::EnterAlternateScreen, cursor::Hide)
        .context("cannot switch to the alternate screen")?;
    let term =
        Terminal::new(CrosstermBackend::new(io::stdout())).context("cannot open the terminal")?;
    Ok((term, guard))
}
