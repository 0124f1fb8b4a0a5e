//! One rung's encoder input buffers, as plain bookkeeping (no GPU in it, so it is tested here).
//!
//! Buffers come in pools of one size; the newest pool is the current one. When the source's
//! size changes, a new pool is made and the old one stays until the pictures scaled into it are
//! encoded (or dropped) and its encoder has been flushed: a picture's handle names its pool and
//! its slot, so a picture of the old size, decoded in the same call as the first of the new
//! size, still encodes from the buffer it was scaled into, with the encoder of its size.

use std::collections::VecDeque;

use super::CudaError;

/// One size's buffers and the encoder that reads them. `Drop` releases the encoder (and its
/// registrations of the buffers) before the buffers.
#[derive(Debug)]
pub struct Pool<S, E> {
    pub encoder: Option<E>,
    pub surfaces: Vec<S>,
    generation: usize,
    pub size: (u32, u32),
    free: Vec<bool>,
    /// Slots submitted to the encoder and not yet returned by it, oldest first.
    pub in_flight: VecDeque<usize>,
}

impl<S, E> Drop for Pool<S, E> {
    fn drop(&mut self) {
        self.encoder = None;
        self.surfaces.clear();
    }
}

impl<S, E> Pool<S, E> {
    /// The encoder now holds `held` pictures: the slots of those it returned are free again.
    pub fn returned(&mut self, held: usize) {
        while self.in_flight.len() > held {
            if let Some(i) = self.in_flight.pop_front() {
                self.free[i] = true;
            }
        }
    }
}

/// A rung's pools; see the module documentation.
#[derive(Debug)]
pub struct RungPools<S, E> {
    pools: Vec<Pool<S, E>>,
    next_generation: usize,
    per_pool: usize,
}

/// Handles are `generation * STRIDE + slot`: pools of different sizes may hold different
/// numbers of buffers.
const STRIDE: usize = 1 << 12;

impl<S, E> RungPools<S, E> {
    /// Pools of `per_pool` buffers each (until [`set_per_pool`](Self::set_per_pool)).
    pub fn new(per_pool: usize) -> RungPools<S, E> {
        RungPools { pools: Vec::new(), next_generation: 0, per_pool: per_pool.clamp(1, STRIDE) }
    }

    /// Buffers in each pool made from now on (the decoder's surface count is known only once
    /// the stream's first sequence header was parsed).
    pub fn set_per_pool(&mut self, per_pool: usize) {
        self.per_pool = per_pool.clamp(1, STRIDE);
    }

    /// Takes a free buffer of `size` for a picture (a new current pool, made by `alloc`, when
    /// the size changed); returns the picture's handle.
    pub fn take(
        &mut self,
        size: (u32, u32),
        mut alloc: impl FnMut() -> Result<S, CudaError>,
    ) -> Result<usize, CudaError> {
        if self.pools.last().is_none_or(|p| p.size != size) {
            let surfaces = (0..self.per_pool).map(|_| alloc()).collect::<Result<Vec<_>, _>>()?;
            self.pools.push(Pool {
                generation: self.next_generation,
                size,
                free: vec![true; surfaces.len()],
                surfaces,
                in_flight: VecDeque::new(),
                encoder: None,
            });
            self.next_generation += 1;
        }
        let pool = self.pools.last_mut().expect("made above");
        let Some(slot) = pool.free.iter().position(|f| *f) else {
            return Err(CudaError::Invalid(format!("all {} input buffers of a rung are busy", pool.surfaces.len())));
        };
        pool.free[slot] = false;
        Ok(pool.generation * STRIDE + slot)
    }

    /// The pool (its index among the live ones) and slot a handle names.
    fn find(&self, handle: usize) -> Option<(usize, usize)> {
        let (generation, slot) = (handle / STRIDE, handle % STRIDE);
        self.pools.iter().position(|p| p.generation == generation && slot < p.surfaces.len()).map(|i| (i, slot))
    }

    /// The buffer a handed-out handle names, to write into.
    pub fn surface_mut(&mut self, handle: usize) -> Option<&mut S> {
        self.find(handle).map(|(i, slot)| &mut self.pools[i].surfaces[slot])
    }

    /// The pool and slot of `handle`, for encoding it. Encoding into the current pool means
    /// every older size is done with: those pools are returned first, to be flushed (their
    /// units come before this picture's) and dropped.
    #[allow(clippy::type_complexity)]
    pub fn for_encode(&mut self, handle: usize) -> Result<(Vec<Pool<S, E>>, &mut Pool<S, E>, usize), CudaError> {
        let Some((i, slot)) = self.find(handle) else {
            return Err(CudaError::Invalid(format!("no input buffer {handle} in this rung")));
        };
        let older = if i + 1 == self.pools.len() { self.pools.drain(..i).collect() } else { Vec::new() };
        let pool = self.pools.iter_mut().find(|p| p.generation == handle / STRIDE).expect("found above");
        if pool.free[slot] {
            return Err(CudaError::Invalid(format!("input buffer {handle} was not handed out")));
        }
        Ok((older, pool, slot))
    }

    /// Marks `slot` of `pool` free (encoded without the encoder keeping it, or dropped).
    pub fn free(pool: &mut Pool<S, E>, slot: usize) {
        pool.free[slot] = true;
    }

    /// Gives back a picture's buffer unencoded.
    pub fn release(&mut self, handle: usize) {
        if let Some((i, slot)) = self.find(handle) {
            self.pools[i].free[slot] = true;
        }
    }

    /// End of a segment: every pool, oldest first, to flush; all but the current one are
    /// dropped after.
    pub fn all(&mut self) -> impl Iterator<Item = &mut Pool<S, E>> {
        self.pools.iter_mut()
    }

    /// Drops the pools older than the current one (after `all` flushed them).
    pub fn drop_older(&mut self) {
        let n = self.pools.len().saturating_sub(1);
        self.pools.drain(..n);
    }

    /// Buffers handed out and not yet given back, across pools.
    #[cfg(test)]
    pub fn busy(&self) -> usize {
        self.pools.iter().map(|p| p.free.iter().filter(|f| !**f).count()).sum()
    }

    /// Live pools (the current one and those kept for pictures of older sizes).
    #[cfg(test)]
    pub fn pools(&self) -> usize {
        self.pools.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Buffers are the size they were made for, so a test sees which pool served a picture.
    type Pools = RungPools<(u32, u32), &'static str>;

    fn alloc(size: (u32, u32)) -> impl FnMut() -> Result<(u32, u32), CudaError> {
        move || Ok(size)
    }

    #[test]
    fn a_picture_of_the_old_size_encodes_from_its_own_buffer_after_a_size_change() {
        let mut p = Pools::new(4);
        let old = p.take((1280, 720), alloc((1280, 720))).expect("take");
        p.for_encode(old).expect("encode").1.encoder = Some("720p session");
        // The next picture is still in flight at 720p when the source switches to 854x480.
        let old2 = p.take((1280, 720), alloc((1280, 720))).expect("take");
        let new = p.take((854, 480), alloc((854, 480))).expect("take");
        assert_ne!(old2, new, "handles name their pool");
        assert_eq!(p.pools(), 2, "the old size is kept while a picture of it is pending");
        let (older, pool, slot) = p.for_encode(old2).expect("old picture");
        assert!(older.is_empty(), "encoding an older picture retires nothing");
        assert_eq!((pool.surfaces[slot], pool.encoder), ((1280, 720), Some("720p session")));
        Pools::free(pool, slot);
        // The first encode into the new size hands the old pool back to be flushed.
        let (older, pool, slot) = p.for_encode(new).expect("new picture");
        assert_eq!(older.len(), 1);
        assert_eq!((older[0].size, older[0].encoder), ((1280, 720), Some("720p session")));
        assert_eq!((pool.surfaces[slot], pool.encoder), ((854, 480), None), "a new session for the new size");
        Pools::free(pool, slot);
        assert_eq!((p.pools(), p.busy()), (1, 0), "the old pool left to be flushed; the new buffer is free");
    }

    #[test]
    fn buffers_come_back_when_encoded_returned_or_released() {
        let mut p = Pools::new(2);
        let a = p.take((64, 64), alloc((64, 64))).expect("a");
        let b = p.take((64, 64), alloc((64, 64))).expect("b");
        let e = p.take((64, 64), alloc((64, 64))).expect_err("both busy");
        assert_eq!(e.code(), "invalid_gpu_call");
        p.release(b);
        let (_, pool, slot) = p.for_encode(a).expect("a");
        pool.in_flight.push_back(slot);
        pool.returned(1); // the encoder holds it
        assert_eq!(p.busy(), 1);
        let (_, pool, _) = p.for_encode(a).expect("a is still handed out");
        pool.returned(0); // and gave it back
        assert_eq!(p.busy(), 0);
        assert!(p.for_encode(a).is_err(), "a free buffer cannot be encoded");
        assert!(p.for_encode(99).is_err(), "an unknown handle is an error, not a panic");
    }

    #[test]
    fn the_end_of_a_segment_flushes_every_pool_and_keeps_the_current_one() {
        let mut p = Pools::new(2);
        let a = p.take((64, 64), alloc((64, 64))).expect("a");
        p.take((32, 32), alloc((32, 32))).expect("b");
        p.release(a);
        assert_eq!(p.all().map(|pool| pool.size).collect::<Vec<_>>(), vec![(64, 64), (32, 32)]);
        p.drop_older();
        assert_eq!(p.all().map(|pool| pool.size).collect::<Vec<_>>(), vec![(32, 32)]);
    }

    /// NVENC unregisters its input buffers when its session closes: the session must go first.
    #[test]
    fn a_pool_drops_its_encoder_before_its_buffers() {
        use std::cell::RefCell;
        use std::rc::Rc;
        struct Logs(&'static str, Rc<RefCell<Vec<&'static str>>>);
        impl Drop for Logs {
            fn drop(&mut self) {
                self.1.borrow_mut().push(self.0);
            }
        }
        let log = Rc::new(RefCell::new(Vec::new()));
        let mut p: RungPools<Logs, Logs> = RungPools::new(1);
        let h = p.take((16, 16), || Ok(Logs("buffer", log.clone()))).expect("take");
        p.for_encode(h).expect("encode").1.encoder = Some(Logs("encoder", log.clone()));
        drop(p);
        assert_eq!(*log.borrow(), vec!["encoder", "buffer"]);
    }
}
