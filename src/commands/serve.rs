//! `runbookd serve`: the daemon, until SIGTERM or SIGINT.

use tokio_util::sync::CancellationToken;

use super::{Env, Exit, Failure, Outcome};
use crate::cli::ServeArgs;
use crate::daemon::{Options, bind, serve};

pub async fn run(env: &Env, args: ServeArgs) -> Outcome {
    let stop = CancellationToken::new();
    tokio::spawn(watch_signals(stop.clone()));
    let mut config = env.config.clone();
    if let Some(l) = args.listen {
        config.listen = l;
    }
    let unavailable = |e: anyhow::Error| match e.downcast::<crate::store::StoreError>() {
        Ok(store) => Failure::from(store),
        Err(other) => Failure::new(Exit::Unavailable, format!("{other:#}")),
    };
    let listener = bind(&config).await.map_err(unavailable)?;
    let opts = Options {
        config,
        secrets: env.secrets.clone(),
    };
    serve(opts, listener, async move { stop.cancelled().await })
        .await
        .map_err(|e| match e.downcast::<crate::store::StoreError>() {
            Ok(store) => Failure::from(store),
            Err(other) => Failure::new(Exit::Unavailable, format!("{other:#}")),
        })?;
    Ok(Exit::Ok)
}

/// The first SIGTERM or SIGINT stops the daemon gracefully; a second one
/// exits at once.
async fn watch_signals(stop: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot listen for SIGTERM/SIGINT");
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    stop.cancel();
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    eprintln!("second signal: exiting now");
    std::process::exit(130);
}
