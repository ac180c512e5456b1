//! Lending a camera's buffers to the frame path without losing one: a [`Lender`] hands out at
//! most `limit` [`Lease`]s at a time, and a lease gives its item (a libcamera request with its
//! buffer) back to the camera thread when dropped, wherever that happens (encoded, dropped
//! for a full queue, replaced as the preview's latest frame, a writer thread ending).
//!
//! Stopping is the dangerous moment: a request must never outlive its camera (libcamera
//! crashes), so [`Lender::close`] waits for every lease to come back. A lease that is still
//! out when the wait gives up is *forgotten* when it is finally dropped (its request leaked,
//! never destroyed), and the caller, told so, must keep the camera alive (leak it) too.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How many of a camera's `buffers` may be lent at once: all but two, so one is always being
/// filled by the sensor and the next is already queued behind it (the camera never waits for
/// a buffer, so lending never makes it skip a frame); at least one.
pub fn lendable(buffers: usize) -> usize {
    buffers.saturating_sub(2).max(1)
}

/// Where given-back items go (the camera thread's event channel).
type GiveBack<T> = Box<dyn Fn(T) -> Result<(), T> + Send + Sync>;

struct State {
    out: usize,
    /// False once closing: nothing more is lent.
    lending: bool,
    /// False once closing gave up waiting: late items are leaked, not given back.
    taking_back: bool,
}

struct Home<T> {
    state: Mutex<State>,
    returned: Condvar,
    give_back: GiveBack<T>,
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The camera thread's side.
pub struct Lender<T: Send + 'static> {
    home: Arc<Home<T>>,
    limit: usize,
}

impl<T: Send + 'static> Lender<T> {
    /// At most `limit` leases at a time; a dropped lease calls `give_back` with its item (an
    /// `Err` from it, e.g. the camera thread's channel closed, leaks the item: never freed
    /// after its camera).
    pub fn new(
        limit: usize,
        give_back: impl Fn(T) -> Result<(), T> + Send + Sync + 'static,
    ) -> Lender<T> {
        Lender {
            home: Arc::new(Home {
                state: Mutex::new(State {
                    out: 0,
                    lending: true,
                    taking_back: true,
                }),
                returned: Condvar::new(),
                give_back: Box::new(give_back),
            }),
            limit,
        }
    }

    /// Lends `item`, or hands it back (`Err`) when `limit` leases are already out or the
    /// lender is closed.
    pub fn lend(&self, item: T) -> Result<Lease<T>, T> {
        let mut st = lock(&self.home.state);
        if !st.lending || st.out >= self.limit {
            return Err(item);
        }
        st.out += 1;
        Ok(Lease {
            item: Mutex::new(Some(item)),
            home: self.home.clone(),
        })
    }

    /// Leases out now.
    pub fn out(&self) -> usize {
        lock(&self.home.state).out
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Stops lending and waits up to `wait` for every lease to come back. Returns how many are
    /// still out: 0 means every item was given back before this returned; otherwise those
    /// items will be leaked when their leases drop, and the caller must not free what they
    /// point into.
    pub fn close(&self, wait: Duration) -> usize {
        let deadline = Instant::now() + wait;
        let mut st = lock(&self.home.state);
        st.lending = false;
        while st.out > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            st = self
                .home
                .returned
                .wait_timeout(st, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        if st.out > 0 {
            st.taking_back = false;
        }
        st.out
    }
}

/// One lent item; gives it back when dropped.
pub struct Lease<T: Send + 'static> {
    // In a mutex only so a lease may be shared between threads (`Sync`) while its item is
    // merely `Send`; nothing reads the item while lent.
    item: Mutex<Option<T>>,
    home: Arc<Home<T>>,
}

impl<T: Send + 'static> Drop for Lease<T> {
    fn drop(&mut self) {
        let item = self
            .item
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let mut st = lock(&self.home.state);
        if let Some(item) = item {
            // Given back under the lock, so `close` cannot finish (and the camera be freed)
            // between this check and the item reaching the camera thread.
            let failed = if st.taking_back {
                (self.home.give_back)(item).err()
            } else {
                Some(item)
            };
            if let Some(item) = failed {
                // Its camera may be gone: destroying the item could touch freed memory.
                std::mem::forget(item);
            }
        }
        st.out -= 1;
        self.home.returned.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc;

    /// An item that counts its destructions (a request freed).
    struct Item(u32, Arc<AtomicUsize>);
    impl Drop for Item {
        fn drop(&mut self) {
            self.1.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn lender(limit: usize) -> (Lender<Item>, mpsc::Receiver<Item>, Arc<AtomicUsize>) {
        let (tx, rx) = mpsc::channel();
        let lender = Lender::new(limit, move |item| tx.send(item).map_err(|e| e.0));
        (lender, rx, Arc::new(AtomicUsize::new(0)))
    }

    #[test]
    fn two_buffers_always_stay_with_the_camera() {
        assert_eq!(lendable(6), 4);
        assert_eq!(lendable(4), 2);
        assert_eq!(lendable(2), 1, "a camera with two buffers still lends one");
    }

    #[test]
    fn a_dropped_lease_gives_its_item_back() {
        let (lender, rx, freed) = lender(2);
        let lease = lender.lend(Item(7, freed.clone())).ok().unwrap();
        assert_eq!(lender.out(), 1);
        assert!(rx.try_recv().is_err());
        drop(lease);
        assert_eq!(rx.try_recv().unwrap().0, 7);
        assert_eq!(lender.out(), 0);
    }

    #[test]
    fn no_more_than_the_limit_is_lent() {
        let (lender, rx, freed) = lender(2);
        let a = lender.lend(Item(1, freed.clone())).ok().unwrap();
        let _b = lender.lend(Item(2, freed.clone())).ok().unwrap();
        let refused = lender.lend(Item(3, freed.clone())).err().unwrap();
        assert_eq!(refused.0, 3, "the caller keeps the item it could not lend");
        drop(a);
        assert_eq!(rx.try_recv().unwrap().0, 1);
        assert!(lender.lend(Item(4, freed.clone())).is_ok());
    }

    #[test]
    fn close_waits_for_leases_dropped_on_other_threads() {
        let (lender, rx, freed) = lender(4);
        let lease = lender.lend(Item(1, freed.clone())).ok().unwrap();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            drop(lease);
        });
        assert_eq!(lender.close(Duration::from_secs(10)), 0);
        assert_eq!(
            rx.try_recv().unwrap().0,
            1,
            "given back before close returned"
        );
        t.join().unwrap();
        assert!(lender.lend(Item(2, freed.clone())).is_err(), "closed");
    }

    #[test]
    fn a_lease_still_out_after_close_is_leaked_not_freed() {
        let (lender, rx, freed) = lender(4);
        let lease = lender.lend(Item(1, freed.clone())).ok().unwrap();
        assert_eq!(lender.close(Duration::from_millis(20)), 1);
        drop(lease);
        assert!(
            rx.try_recv().is_err(),
            "nothing given back to a closed camera"
        );
        assert_eq!(
            freed.load(Ordering::SeqCst),
            0,
            "the item was never destroyed"
        );
        assert_eq!(lender.out(), 0);
    }

    #[test]
    fn an_item_the_camera_thread_cannot_take_is_leaked() {
        let (lender, rx, freed) = lender(4);
        let lease = lender.lend(Item(1, freed.clone())).ok().unwrap();
        drop(rx);
        drop(lease);
        assert_eq!(freed.load(Ordering::SeqCst), 0);
    }
}
