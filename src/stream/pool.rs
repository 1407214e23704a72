//! Read buffers lent to connections only while they read.
//!
//! A connection waiting for input with an empty read buffer (no unfinished
//! frame) gives its buffer back to a small per-thread pool and takes one
//! again when bytes arrive. An idle connection then holds no read buffer,
//! whatever it received before (uWebSockets gets the same effect with one
//! shared receive buffer per event loop), while a busy one reuses pooled
//! buffers and allocates nothing per message. Messages handed to the
//! application are `Bytes` split off a buffer; a pooled buffer never
//! overlaps them, so it is safe to lend while they live.
//!
//! Buffers for large messages (more than [`POOLED_MAX_CAPACITY`]) are pooled
//! apart, only while whole (one allocation nothing was split off, so their
//! capacity is all they hold) and up to [`LARGE_POOLED_BYTES`] per thread:
//! a connection receiving one large message after another takes a buffer
//! of the right size and reads a message in one system call, and a
//! connection gone idle after large messages still holds nothing.

use std::cell::RefCell;

use bytes::BytesMut;

/// Buffers kept per thread: enough for the connections one thread reads in
/// a burst; the rest are freed.
const POOLED_PER_THREAD: usize = 64;

/// The largest buffer the pool of small buffers keeps. A larger one (grown
/// for one large message) goes to the pool of large buffers if it is whole
/// and there is room (see [`LARGE_POOLED_BYTES`]), and is freed otherwise,
/// so a past large message costs a thread at most that much once idle.
pub(super) const POOLED_MAX_CAPACITY: usize = 64 << 10;

/// The most memory this thread's pool keeps in whole buffers larger than
/// [`POOLED_MAX_CAPACITY`]: four buffers of the largest read (256 KiB), or
/// sixteen for 64 KiB messages.
const LARGE_POOLED_BYTES: usize = 1 << 20;

thread_local! {
    static POOL: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
    static LARGE: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
}

/// A pooled buffer with room for at least `want` bytes (at most
/// [`POOLED_MAX_CAPACITY`]), if this thread has one.
pub(super) fn take(want: usize) -> Option<BytesMut> {
    if want > POOLED_MAX_CAPACITY {
        // None of its buffers is that large: keep them for reads they fit.
        return None;
    }
    POOL.try_with(|pool| {
        let mut pool = pool.borrow_mut();
        let last = pool.last_mut()?;
        // Room at the end, or room after moving back to the start of an
        // allocation no message still uses: no copy, no allocation.
        if last.try_reclaim(want) {
            pool.pop()
        } else {
            // Too small for this connection's reads: freed, not kept.
            pool.pop();
            None
        }
    })
    .ok()
    .flatten()
}

/// A whole buffer for a large read of `want` bytes (more than
/// [`POOLED_MAX_CAPACITY`]) with an eighth more room: a pooled one of about
/// that size, or a new one. To [`give_whole`] back if nothing arrives.
///
/// The eighth is for the readiness of the socket: a read that fills the
/// buffer leaves it marked readable, and the next read finds nothing (one
/// more system call per message when messages are the size of the last).
/// A pooled buffer much larger than that is freed rather than lent: what is
/// read into it keeps the whole allocation alive.
pub(super) fn large(want: usize) -> BytesMut {
    debug_assert!(want > POOLED_MAX_CAPACITY);
    let size = want + want / 8;
    let pooled = LARGE
        .try_with(|large| {
            let buf = large.borrow_mut().pop()?;
            (size..=size + size / 4)
                .contains(&buf.capacity())
                .then_some(buf)
        })
        .ok()
        .flatten();
    pooled.unwrap_or_else(|| BytesMut::with_capacity(size))
}

/// Gives back an empty buffer that [`take`] or [`large`] returned, with
/// nothing read into it: a large one (one whole allocation, as [`large`]
/// made it) joins the large buffers while they hold less than
/// [`LARGE_POOLED_BYTES`]; a small one (maybe a view) the others.
pub(super) fn give_whole(buf: BytesMut) {
    debug_assert!(buf.is_empty(), "only empty read buffers are pooled");
    if buf.capacity() <= POOLED_MAX_CAPACITY {
        return give(buf);
    }
    let _ = LARGE.try_with(|large| {
        let mut large = large.borrow_mut();
        let held: usize = large.iter().map(BytesMut::capacity).sum();
        if held + buf.capacity() <= LARGE_POOLED_BYTES {
            large.push(buf);
        }
    });
}

/// Gives an empty buffer back to this thread's pool (or frees it). It may
/// be a view of an allocation shared with messages; one larger than
/// [`POOLED_MAX_CAPACITY`] is freed.
pub(super) fn give(buf: BytesMut) {
    debug_assert!(buf.is_empty(), "only empty read buffers are pooled");
    if buf.capacity() == 0 || buf.capacity() > POOLED_MAX_CAPACITY {
        return;
    }
    let _ = POOL.try_with(|pool| {
        let mut pool = pool.borrow_mut();
        if pool.len() < POOLED_PER_THREAD {
            pool.push(buf);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lends_back_what_it_was_given_and_frees_the_rest() {
        while take(1).is_some() {}
        give(BytesMut::with_capacity(8 << 10));
        let buf = take(8 << 10).expect("the pooled buffer");
        assert!(buf.capacity() >= 8 << 10);
        assert!(take(1).is_none(), "one buffer lent once");

        give(BytesMut::with_capacity(POOLED_MAX_CAPACITY + 1));
        assert!(take(1).is_none(), "a large buffer is freed, not pooled");

        give(BytesMut::with_capacity(8 << 10));
        assert!(take(POOLED_MAX_CAPACITY + 1).is_none());
        assert!(
            take(1).is_some(),
            "kept through a request for more than it pools"
        );

        for _ in 0..POOLED_PER_THREAD + 10 {
            give(BytesMut::with_capacity(1024));
        }
        let mut lent = 0;
        while take(1).is_some() {
            lent += 1;
        }
        assert_eq!(lent, POOLED_PER_THREAD);
    }

    #[test]
    fn a_buffer_shared_with_a_live_message_is_lent_without_touching_it() {
        while take(1).is_some() {}
        let mut buf = BytesMut::with_capacity(8 << 10);
        buf.extend_from_slice(b"a message the application still holds");
        let message = buf.split().freeze();
        give(buf);
        // The rest of the allocation is lent; the message is untouched.
        let mut lent = take(1024).expect("room after the message");
        lent.extend_from_slice(&[0xff; 1024]);
        assert_eq!(&message[..], b"a message the application still holds");
        // Not enough room without the message's part: not lent.
        give(lent.split_off(lent.len()));
        assert!(take(8 << 10).is_none());
    }

    #[test]
    fn whole_large_buffers_are_kept_up_to_a_byte_cap() {
        let drain = || LARGE.with(|l| l.borrow_mut().clear());
        drain();
        const SIZE: usize = 100 << 10;
        let made = large(SIZE);
        assert!(made.capacity() > SIZE, "room to spare beyond the read");
        let capacity = made.capacity();
        let at = made.as_ptr();
        give_whole(made);
        let again = large(SIZE);
        assert_eq!(again.as_ptr(), at, "the pooled buffer is lent again");
        let other = large(SIZE);
        assert_ne!(other.as_ptr(), at, "lent once");

        // Up to the cap, then freed.
        for _ in 0..LARGE_POOLED_BYTES / capacity + 3 {
            give_whole(BytesMut::with_capacity(capacity));
        }
        let held: usize = LARGE.with(|l| l.borrow().iter().map(BytesMut::capacity).sum());
        assert!(
            held <= LARGE_POOLED_BYTES && held + capacity > LARGE_POOLED_BYTES,
            "{held}"
        );

        // Too small, or much larger than asked (what is read into it would
        // keep it all): freed, not lent.
        for pooled in [SIZE, 4 * SIZE] {
            drain();
            give_whole(BytesMut::with_capacity(pooled));
            let lent = large(2 * SIZE);
            assert!(
                lent.capacity() < 3 * SIZE,
                "a {pooled} B buffer lent for {}",
                2 * SIZE
            );
            assert!(
                LARGE.with(|l| l.borrow().is_empty()),
                "the unfit one was freed"
            );
        }

        // A small buffer given back whole joins the small ones.
        drain();
        give_whole(BytesMut::with_capacity(8 << 10));
        assert!(LARGE.with(|l| l.borrow().is_empty()));
    }
}
