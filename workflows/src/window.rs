//! Running many activities of one workflow a window at a time: the ladder's chunks, the
//! sound's rounds, a task's chains or trims.

/// Runs `start` for each item, at most `width` at a time: a new one starts as soon as any
/// running one finishes, and `finished` hears how many have. Results come in the order they
/// finish; the first error ends the wait. (`select_all` polls with the SDK's own waker;
/// `FuturesUnordered` would not.)
pub(crate) async fn run_windowed<'a, I, T, E, F, Fut>(
    items: &'a [I],
    width: usize,
    start: F,
    mut finished: impl FnMut(usize),
) -> Result<Vec<T>, E>
where
    F: Fn(&'a I) -> std::pin::Pin<Box<Fut>>,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let mut waiting = items.iter();
    let mut running: Vec<_> = waiting.by_ref().take(width.max(1)).map(&start).collect();
    let mut done = Vec::with_capacity(items.len());
    while !running.is_empty() {
        let (result, _, rest) = futures::future::select_all(running).await;
        running = rest;
        done.push(result?);
        finished(done.len());
        running.extend(waiting.next().map(&start));
    }
    Ok(done)
}
