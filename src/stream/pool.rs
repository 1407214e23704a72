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

/// Buffers larger than this (grown for one large message) are freed rather
/// than pooled, so a past large message costs no memory once idle.
const POOLED_MAX_CAPACITY: usize = 64 << 10;

/// The most memory this thread's pool keeps in whole buffers larger than
/// [`POOLED_MAX_CAPACITY`]: four buffers of the largest read (256 KiB), or
/// sixteen for 64 KiB messages.
const LARGE_POOLED_BYTES: usize = 1 << 20;

thread_local! {
    static POOL: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
    static LARGE: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
}

/// A pooled buffer with room for at least `want` bytes, if this thread has
/// one.
pub(super) fn take(want: usize) -> Option<BytesMut> {
    if want > POOLED_MAX_CAPACITY {
        return take_large(want);
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

/// A whole large buffer with room for `want` bytes, if this thread has one
/// (a smaller one found instead is freed: the connections of this thread
/// now receive larger messages).
fn take_large(want: usize) -> Option<BytesMut> {
    LARGE
        .try_with(|large| {
            let buf = large.borrow_mut().pop()?;
            (buf.capacity() >= want).then_some(buf)
        })
        .ok()
        .flatten()
}

/// A new buffer for a read of `want` bytes, when [`take`] had none: for a
/// large read, one allocation of that size and an eighth more, to read into
/// directly and to [`give_whole`] back if nothing arrives.
///
/// The eighth is for the readiness of the socket: a read that fills the
/// buffer leaves it marked readable, and the next read finds nothing (one
/// more system call per message when messages are the size of the last).
pub(super) fn allocate_large(want: usize) -> Option<BytesMut> {
    (want > POOLED_MAX_CAPACITY).then(|| BytesMut::with_capacity(want + want / 8))
}

/// Gives back a buffer that is one whole allocation, empty, as [`take`] or
/// [`allocate_large`] returned it: a large one joins the large buffers while
/// they hold less than [`LARGE_POOLED_BYTES`], a small one the others.
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
        while take_large(1).is_some() {}
        const SIZE: usize = 100 << 10;
        let made = allocate_large(SIZE).expect("a large read gets a buffer");
        assert!(made.capacity() > SIZE, "room to spare beyond the read");
        assert!(
            allocate_large(8 << 10).is_none(),
            "small reads use the stack first"
        );
        let capacity = made.capacity();
        give_whole(made);
        let again = take(SIZE).expect("the pooled large buffer");
        assert_eq!(again.capacity(), capacity);
        assert!(take(SIZE).is_none(), "lent once");

        // Up to the cap, then freed.
        for _ in 0..LARGE_POOLED_BYTES / capacity + 3 {
            give_whole(BytesMut::with_capacity(capacity));
        }
        let held: usize = LARGE.with(|l| l.borrow().iter().map(BytesMut::capacity).sum());
        assert!(
            held <= LARGE_POOLED_BYTES && held + capacity > LARGE_POOLED_BYTES,
            "{held}"
        );

        // One too small for the read asked is freed, not lent.
        while take_large(1).is_some() {}
        give_whole(BytesMut::with_capacity(SIZE));
        assert!(take(2 * SIZE).is_none());
        assert!(take(SIZE).is_none(), "the small one was freed");

        // A view (it may pin a larger allocation) is never kept as large.
        give(BytesMut::with_capacity(SIZE));
        assert!(take(SIZE).is_none());
    }
}
