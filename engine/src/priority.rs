//! Where a stream's threads stand against each other on a busy machine.
//!
//! A CPU session's decode thread is the one stage every rendition waits for: it alone decodes
//! the stream (one thread), while the rendition workers share the other cores. Under equal
//! scheduling weights a decode thread among four busy rendition workers on two cores gets
//! about 40% of a core, falls behind a live input and leaves its backlog for after the last
//! input byte (measured in `zerohop bench --live-edge`, doc/performance.md). So rendition
//! workers run a few nice levels below the decode thread (and below the control plane's
//! network threads, which hand the input in): the decoder keeps to the live edge, and the
//! workers take every cycle it leaves. Linux keeps a nice value per thread; elsewhere this is
//! a no-op.

/// Nice levels the largest rendition's worker runs below the thread that starts it (CFS weight
/// 1024 against 655 at 2).
pub const RENDITION_NICE: i32 = 2;

/// Nice levels between a rendition worker and the next larger one's. At the end of a segment the
/// renditions have the same pictures left, and the largest takes longest per picture: it goes
/// first (longest processing time first), so the last byte of every rendition leaves about
/// together rather than the largest one's last pictures after everyone else's.
pub const RENDITION_NICE_STEP: i32 = 2;

/// The nice steps below the decoder of each rendition in `pixels` (per rendition, its picture
/// size): the largest at [`RENDITION_NICE`], each smaller one [`RENDITION_NICE_STEP`] further
/// (equal sizes share a level).
pub fn rendition_steps(pixels: &[u64]) -> Vec<i32> {
    pixels
        .iter()
        .map(|p| {
            let larger = pixels.iter().filter(|q| *q > p).collect::<std::collections::BTreeSet<_>>().len();
            RENDITION_NICE + RENDITION_NICE_STEP * i32::try_from(larger).unwrap_or(i32::MAX / 4)
        })
        .collect()
}

/// Lowers the calling thread's priority by `steps` nice levels (never raises it: that needs
/// privileges). Returns the nice value the thread has now, or why it could not be set.
#[cfg(target_os = "linux")]
pub fn lower_this_thread(steps: i32) -> std::io::Result<i32> {
    // SAFETY: gettid has no preconditions and only returns the caller's thread id.
    let tid = unsafe { libc::gettid() };
    let who = libc::id_t::try_from(tid).map_err(|_| std::io::Error::other("negative thread id"))?;
    // getpriority may return -1 as a value: errno tells an error apart, so it is cleared first.
    // SAFETY: __errno_location returns the calling thread's errno, valid for the thread's life;
    // getpriority reads the scheduling entity `who`, this thread.
    let now = unsafe {
        *libc::__errno_location() = 0;
        libc::getpriority(libc::PRIO_PROCESS, who)
    };
    // SAFETY: as above, the calling thread's errno.
    if now == -1 && unsafe { *libc::__errno_location() } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let want = (now + steps.max(0)).min(19);
    // SAFETY: setpriority on this thread's id with a nice value in range; no memory is passed.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, who, want) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(want)
}

#[cfg(not(target_os = "linux"))]
pub fn lower_this_thread(_steps: i32) -> std::io::Result<i32> {
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_largest_rendition_is_nearest_the_decoder() {
        let steps = rendition_steps(&[1280 * 720, 640 * 360, 854 * 480, 640 * 360, 426 * 240]);
        assert_eq!(
            steps,
            vec![
                RENDITION_NICE,
                RENDITION_NICE + 2 * RENDITION_NICE_STEP,
                RENDITION_NICE + RENDITION_NICE_STEP,
                RENDITION_NICE + 2 * RENDITION_NICE_STEP,
                RENDITION_NICE + 3 * RENDITION_NICE_STEP
            ]
        );
    }

    #[cfg(target_os = "linux")]
    /// Read back from the kernel, for this thread alone: another thread keeps its nice value.
    #[test]
    fn a_lowered_thread_keeps_its_own_nice_value() {
        let before = std::thread::spawn(|| lower_this_thread(0).expect("read")).join().expect("thread");
        let lowered = std::thread::spawn(|| lower_this_thread(3).expect("lower")).join().expect("thread");
        assert_eq!(lowered, (before + 3).min(19));
        let other = std::thread::spawn(|| lower_this_thread(0).expect("read")).join().expect("thread");
        assert_eq!(other, before, "a new thread starts at the process's value, not the lowered thread's");
    }
}
