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

use std::cell::RefCell;

use bytes::BytesMut;

/// Buffers kept per thread: enough for the connections one thread reads in
/// a burst; the rest are freed.
const POOLED_PER_THREAD: usize = 64;

/// Buffers larger than this (grown for one large message) are freed rather
/// than pooled, so a past large message costs no memory once idle.
const POOLED_MAX_CAPACITY: usize = 64 << 10;

thread_local! {
    static POOL: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
}

/// A pooled buffer with room for at least `want` bytes, if this thread has
/// one.
pub(super) fn take(want: usize) -> Option<BytesMut> {
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

/// Gives an empty buffer back to this thread's pool (or frees it).
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
}
