//! Entry point: parse settings, start telemetry, serve until SIGTERM/SIGINT.
//! Start-up failures (bad settings, log directory, address in use) exit with code 2.

use std::process::ExitCode;

use clap::Parser;
use service::{config::Command, config::Settings, healthcheck, startup::Application, telemetry};

fn main() -> ExitCode {
    let settings = match Settings::try_parse() {
        Ok(settings) => settings,
        Err(err) if !err.use_stderr() => {
            let _ = err.print(); // --help, --version
            return ExitCode::SUCCESS;
        }
        Err(err) => {
            return fail(
                err.render()
                    .to_string()
                    .lines()
                    .next()
                    .unwrap_or("bad arguments"),
            )
        }
    };
    if let Some(Command::Healthcheck) = settings.command {
        return healthcheck::run(settings.listen_addr);
    }
    let telemetry = match telemetry::init(&settings) {
        Ok(guard) => guard,
        Err(err) => return fail(&format!("error: {err:#}")),
    };
    let served = actix_web::rt::System::new().block_on(async {
        let app = Application::build(&settings, telemetry.console_addr)?;
        app.run_until_stopped().await
    });
    drop(telemetry); // flushes every buffered log line before the process exits
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => fail(&format!("error: {err:#}")),
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("{message}");
    ExitCode::from(2)
}
