//! One seeded, counter-based random generator for everything random in thaw:
//! weight initialisation, dropout masks, shuffling.
//!
//! Counter-based means the n-th number of a stream is a pure function
//! `hash(seed, stream, n)`: no state to carry, any element can be drawn
//! independently (a CUDA thread draws element `i` of a dropout mask exactly
//! as the CPU does), and the same seed always gives the same numbers.
//! The hash is SplitMix64's finaliser, integer arithmetic only, so a Python
//! script can reproduce it bit for bit.

/// SplitMix64's finaliser: a bijective mix of 64 bits.
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The `index`-th 64-bit number of stream `stream` under `seed`.
pub fn random_u64(seed: u64, stream: u64, index: u64) -> u64 {
    let key = mix64(seed ^ mix64(stream.wrapping_add(0x9e37_79b9_7f4a_7c15)));
    mix64(key.wrapping_add(index.wrapping_mul(0x9e37_79b9_7f4a_7c15)))
}

/// A uniform number in [0, 1) with 24 random bits (exact in f32).
pub fn uniform_f32(seed: u64, stream: u64, index: u64) -> f32 {
    (random_u64(seed, stream, index) >> 40) as f32 * (1.0 / (1u64 << 24) as f32)
}

/// A uniform number in [0, 1) with 53 random bits (exact in f64).
pub fn uniform_f64(seed: u64, stream: u64, index: u64) -> f64 {
    (random_u64(seed, stream, index) >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// A seeded generator handing out consecutive numbers of one stream, for code
/// that draws sequentially (initialisers, shuffles).
#[derive(Debug, Clone)]
pub struct Rng {
    seed: u64,
    stream: u64,
    counter: u64,
}

impl Rng {
    /// A generator at the start of stream `stream` under `seed`.
    pub fn new(seed: u64, stream: u64) -> Rng {
        Rng {
            seed,
            stream,
            counter: 0,
        }
    }
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let x = random_u64(self.seed, self.stream, self.counter);
        self.counter += 1;
        x
    }
    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
    /// Uniform in [low, high).
    pub fn uniform(&mut self, low: f64, high: f64) -> f64 {
        low + (high - low) * self.next_f64()
    }
    /// Uniform integer in [0, n), n > 0 (Lemire's multiply-shift; bias < 2^-32 for n < 2^32).
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }
    /// Fisher-Yates shuffle.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_numbers_other_seed_other_numbers() {
        let a: Vec<u64> = (0..8).map(|i| random_u64(7, 1, i)).collect();
        let b: Vec<u64> = (0..8).map(|i| random_u64(7, 1, i)).collect();
        let c: Vec<u64> = (0..8).map(|i| random_u64(8, 1, i)).collect();
        assert_eq!(a, b);
        assert!(a.iter().zip(&c).all(|(x, y)| x != y));
    }

    #[test]
    fn uniform_mean_is_about_half() {
        let n = 100_000;
        let mean: f64 = (0..n).map(|i| uniform_f64(1, 2, i)).sum::<f64>() / n as f64;
        assert!((mean - 0.5).abs() < 0.01, "mean {mean}");
    }

    #[test]
    fn shuffle_is_a_permutation() {
        let mut v: Vec<usize> = (0..100).collect();
        Rng::new(3, 0).shuffle(&mut v);
        assert_ne!(v, (0..100).collect::<Vec<_>>());
        v.sort();
        assert_eq!(v, (0..100).collect::<Vec<_>>());
    }
}
