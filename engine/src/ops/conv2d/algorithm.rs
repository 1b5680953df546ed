//! Which cuDNN algorithm a GPU convolution runs: the policy (cuDNN's
//! heuristic, or timing the candidates like PyTorch's
//! `torch.backends.cudnn.benchmark`), the key a choice is cached under, and
//! the rules that turn cuDNN's ranked candidate list into one choice. All of
//! it is host code, unit-tested without a GPU; `cudnn_plan.rs` asks cuDNN
//! for the lists and keeps the choices.
//!
//! **Two ways to rank.** cuDNN ranks the algorithms of a convolution either
//! by a heuristic (`cudnnGetConvolution*Algorithm_v7`: no GPU work, the same
//! answer every run) or by running each one on the real buffers and timing
//! it (`cudnnFindConvolution*AlgorithmEx`: the fastest on this GPU, but
//! timings are noisy, so two runs may pick different algorithms). thaw uses
//! the heuristic unless `THAW_CUDNN_BENCHMARK=1`. Either way the list is
//! ranked once per [`AlgorithmKey`] and the choice reused.
//!
//! **Which candidates may be chosen** ([`choose`]), best-ranked first:
//! - cuDNN says it runs (`status` is success; the heuristic also lists
//!   algorithms that do not support the geometry);
//! - its math is allowed: an f32 convolution runs on FMA units only, unless
//!   TF32 is allowed (`THAW_ALLOW_TF32=1`; even then never converting f32 to
//!   16 bits); 16-bit convolutions may use tensor cores;
//! - it is deterministic (the same bits every run: several backward
//!   algorithms sum with atomics in no fixed order), unless
//!   `THAW_CUDNN_DETERMINISTIC=0`, PyTorch's `cudnn.deterministic = False`.
//!
//! The chosen entry's math type is the one the convolution descriptor is set
//! to: cuDNN reports per algorithm the math it needs.

use crate::cuda::cudarc::cudnn::sys::{
    cudnnConvolutionBwdDataAlgoPerf_t, cudnnConvolutionBwdDataAlgo_t,
    cudnnConvolutionBwdFilterAlgoPerf_t, cudnnConvolutionBwdFilterAlgo_t,
    cudnnConvolutionFwdAlgoPerf_t, cudnnConvolutionFwdAlgo_t, cudnnDeterminism_t, cudnnMathType_t,
    cudnnStatus_t,
};
use crate::error::{Error, Result};
use crate::precision::Precision;

/// Environment variable: `1` ranks algorithms by timing them (cudnnFind),
/// `0` or unset by cuDNN's heuristic.
pub const BENCHMARK_ENV: &str = "THAW_CUDNN_BENCHMARK";

/// Environment variable: `0` also allows nondeterministic algorithms; `1` or
/// unset allows deterministic ones only.
pub const DETERMINISTIC_ENV: &str = "THAW_CUDNN_DETERMINISTIC";

/// How the candidate algorithms are ranked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Search {
    /// cuDNN's heuristic (`cudnnGetConvolution*Algorithm_v7`): no GPU work,
    /// the same choice every run.
    Heuristic,
    /// Each candidate run once on the real buffers and timed
    /// (`cudnnFindConvolution*AlgorithmEx`): the fastest here, but the
    /// choice can change between runs.
    Benchmark,
}

/// The rules for choosing an algorithm, one per device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AlgorithmPolicy {
    /// How candidates are ranked.
    pub search: Search,
    /// Whether only deterministic algorithms may be chosen.
    pub deterministic_only: bool,
}

impl Default for AlgorithmPolicy {
    /// The heuristic, deterministic algorithms only: the same results every run.
    fn default() -> AlgorithmPolicy {
        AlgorithmPolicy {
            search: Search::Heuristic,
            deterministic_only: true,
        }
    }
}

impl AlgorithmPolicy {
    /// As [`BENCHMARK_ENV`] and [`DETERMINISTIC_ENV`] say.
    pub fn from_env() -> Result<AlgorithmPolicy> {
        let var = |name| std::env::var(name).ok();
        AlgorithmPolicy::parse(
            var(BENCHMARK_ENV).as_deref(),
            var(DETERMINISTIC_ENV).as_deref(),
        )
    }

    /// The policy for the values of the two variables (None: unset).
    pub fn parse(benchmark: Option<&str>, deterministic: Option<&str>) -> Result<AlgorithmPolicy> {
        let flag = |name: &str, value: Option<&str>, default: bool| match value.map(str::trim) {
            None | Some("") => Ok(default),
            Some("1") => Ok(true),
            Some("0") => Ok(false),
            Some(other) => Err(Error::Cuda(format!(
                "{name}={other:?}: expected 0 or 1; set it to one of them or unset it"
            ))),
        };
        let benchmark = flag(BENCHMARK_ENV, benchmark, false)?;
        Ok(AlgorithmPolicy {
            search: if benchmark {
                Search::Benchmark
            } else {
                Search::Heuristic
            },
            deterministic_only: flag(DETERMINISTIC_ENV, deterministic, true)?,
        })
    }
}

/// Which of a convolution's three computations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// y from x and the filter.
    Forward,
    /// dx from dy and the filter.
    BackwardData,
    /// The filter's gradient from x and dy.
    BackwardFilter,
}

/// Everything an algorithm choice depends on: a choice is made once per key
/// and reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AlgorithmKey {
    /// Which computation.
    pub direction: Direction,
    /// The input as cuDNN sees it, `[n, h, w, c]` (after any extra
    /// bottom/right padding, see `cuda.rs`).
    pub input: [usize; 4],
    /// The filter, `[o, kh, kw, c]`.
    pub filter: [usize; 4],
    /// Strides `[sh, sw]`.
    pub stride: [usize; 2],
    /// Symmetric padding `[rows, columns]`.
    pub padding: [usize; 2],
    /// Operand format (f32, f16, bf16; the accumulation is always f32).
    pub precision: Precision,
    /// Whether f32 convolutions may use TF32 tensor cores.
    pub allow_tf32: bool,
    /// How the choice was made.
    pub policy: AlgorithmPolicy,
}

/// One entry of cuDNN's ranked list (any of the three perf-result structs).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate<A> {
    /// The algorithm.
    pub algo: A,
    /// Whether it runs for this convolution (anything but success: no).
    pub status: cudnnStatus_t,
    /// Its time in milliseconds (measured by cudnnFind; the heuristic's is -1).
    pub time_ms: f32,
    /// The workspace it needs, in bytes.
    pub workspace_bytes: usize,
    /// Whether it gives the same bits every run.
    pub determinism: cudnnDeterminism_t,
    /// The math type it needs the descriptor set to.
    pub math: cudnnMathType_t,
}

macro_rules! candidate_from_perf {
    ($perf:ty, $algo:ty) => {
        impl From<$perf> for Candidate<$algo> {
            fn from(p: $perf) -> Candidate<$algo> {
                Candidate {
                    algo: p.algo,
                    status: p.status,
                    time_ms: p.time,
                    workspace_bytes: p.memory,
                    determinism: p.determinism,
                    math: p.mathType,
                }
            }
        }
    };
}
candidate_from_perf!(cudnnConvolutionFwdAlgoPerf_t, cudnnConvolutionFwdAlgo_t);
candidate_from_perf!(
    cudnnConvolutionBwdDataAlgoPerf_t,
    cudnnConvolutionBwdDataAlgo_t
);
candidate_from_perf!(
    cudnnConvolutionBwdFilterAlgoPerf_t,
    cudnnConvolutionBwdFilterAlgo_t
);

/// The math type a convolution descriptor starts with: FMA for f32 (no TF32)
/// unless TF32 is allowed, tensor cores for 16-bit operands.
pub fn base_math(precision: Precision, allow_tf32: bool) -> cudnnMathType_t {
    match precision {
        Precision::F32 if allow_tf32 => cudnnMathType_t::CUDNN_DEFAULT_MATH,
        Precision::F32 => cudnnMathType_t::CUDNN_FMA_MATH,
        Precision::F16 | Precision::Bf16 => cudnnMathType_t::CUDNN_TENSOR_OP_MATH,
    }
}

/// Whether an algorithm needing `math` may run a convolution in `precision`.
/// For f32 without TF32 only FMA math qualifies (on Ampere and newer the
/// default math would allow TF32, as PyTorch also insists); with TF32 any
/// math but the one converting f32 operands to f16.
pub fn math_allowed(math: cudnnMathType_t, precision: Precision, allow_tf32: bool) -> bool {
    match precision {
        Precision::F32 if !allow_tf32 => math == cudnnMathType_t::CUDNN_FMA_MATH,
        Precision::F32 => math != cudnnMathType_t::CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION,
        Precision::F16 | Precision::Bf16 => true,
    }
}

/// The best-ranked candidate the rules allow (module docs), from cuDNN's
/// list for `key`; if none, an error counting why each was skipped and
/// saying what to change.
pub fn choose<A: Copy + std::fmt::Debug>(
    candidates: &[Candidate<A>],
    key: &AlgorithmKey,
) -> Result<Candidate<A>> {
    let (mut failed, mut math, mut nondeterministic) = (0, 0, 0);
    for c in candidates {
        if c.status != cudnnStatus_t::CUDNN_STATUS_SUCCESS {
            failed += 1;
        } else if !math_allowed(c.math, key.precision, key.allow_tf32) {
            math += 1;
        } else if key.policy.deterministic_only
            && c.determinism != cudnnDeterminism_t::CUDNN_DETERMINISTIC
        {
            nondeterministic += 1;
        } else {
            return Ok(*c);
        }
    }
    Err(Error::Cuda(format!(
        "conv2d: cuDNN offers no usable {:?} algorithm for {key:?}: of {} candidates, {failed} \
         do not run for this convolution (or its workspace), {math} need a math type not allowed \
         ({}), {nondeterministic} are nondeterministic ({DETERMINISTIC_ENV}=0 allows them); \
         or run with --device cpu",
        key.direction,
        candidates.len(),
        if key.precision == Precision::F32 && !key.allow_tf32 {
            "TF32; THAW_ALLOW_TF32=1 allows it"
        } else {
            "f32 converted to f16"
        },
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use cudnnConvolutionBwdFilterAlgo_t as Algo;
    use cudnnMathType_t::*;

    fn key(precision: Precision, allow_tf32: bool, deterministic_only: bool) -> AlgorithmKey {
        AlgorithmKey {
            direction: Direction::BackwardFilter,
            input: [8, 56, 56, 64],
            filter: [64, 3, 3, 64],
            stride: [1, 1],
            padding: [1, 1],
            precision,
            allow_tf32,
            policy: AlgorithmPolicy {
                search: Search::Heuristic,
                deterministic_only,
            },
        }
    }

    fn candidate(
        algo: Algo,
        ok: bool,
        math: cudnnMathType_t,
        deterministic: bool,
    ) -> Candidate<Algo> {
        Candidate {
            algo,
            status: if ok {
                cudnnStatus_t::CUDNN_STATUS_SUCCESS
            } else {
                cudnnStatus_t::CUDNN_STATUS_NOT_SUPPORTED
            },
            time_ms: -1.0,
            workspace_bytes: 1024,
            determinism: if deterministic {
                cudnnDeterminism_t::CUDNN_DETERMINISTIC
            } else {
                cudnnDeterminism_t::CUDNN_NON_DETERMINISTIC
            },
            math,
        }
    }

    /// A list as cuDNN might rank it for an f32 backward-filter: an
    /// unsupported algorithm first, then a TF32 one, a nondeterministic FMA
    /// one, and a deterministic FMA one.
    fn ranked() -> Vec<Candidate<Algo>> {
        vec![
            candidate(
                Algo::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT,
                false,
                CUDNN_FMA_MATH,
                true,
            ),
            candidate(
                Algo::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1,
                true,
                CUDNN_TENSOR_OP_MATH,
                true,
            ),
            candidate(
                Algo::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0,
                true,
                CUDNN_FMA_MATH,
                false,
            ),
            candidate(
                Algo::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_3,
                true,
                CUDNN_FMA_MATH,
                true,
            ),
        ]
    }

    #[test]
    fn f32_skips_failures_tensor_cores_and_nondeterminism_by_default() {
        let c = choose(&ranked(), &key(Precision::F32, false, true)).unwrap();
        assert_eq!(c.algo, Algo::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_3);
        // Nondeterministic allowed: the first FMA one.
        let c = choose(&ranked(), &key(Precision::F32, false, false)).unwrap();
        assert_eq!(c.algo, Algo::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0);
    }

    #[test]
    fn tf32_or_16_bit_may_take_the_tensor_core_algorithm_and_its_math() {
        for k in [
            key(Precision::F32, true, true),
            key(Precision::F16, false, true),
        ] {
            let c = choose(&ranked(), &k).unwrap();
            assert_eq!(c.algo, Algo::CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1);
            assert_eq!(c.math, CUDNN_TENSOR_OP_MATH);
        }
        // f32 is never converted to f16, even with TF32 allowed.
        assert!(!math_allowed(
            CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION,
            Precision::F32,
            true
        ));
        assert!(!math_allowed(CUDNN_DEFAULT_MATH, Precision::F32, false));
        assert!(math_allowed(CUDNN_FMA_MATH, Precision::F32, true));
    }

    #[test]
    fn no_usable_candidate_is_an_error_that_says_what_to_change() {
        let only_tf32 = &ranked()[..2];
        let e = choose(only_tf32, &key(Precision::F32, false, true))
            .unwrap_err()
            .to_string();
        assert!(e.contains("1 do not run"), "{e}");
        assert!(e.contains("1 need a math type"), "{e}");
        assert!(e.contains("THAW_ALLOW_TF32=1"), "{e}");
        assert!(e.contains("--device cpu"), "{e}");
        let e = choose::<Algo>(&[], &key(Precision::F32, false, true)).unwrap_err();
        assert!(e.to_string().contains("of 0 candidates"), "{e}");
    }

    #[test]
    fn the_key_tells_apart_everything_the_choice_depends_on() {
        use std::collections::HashSet;
        let base = key(Precision::F32, false, true);
        let mut variants = vec![base];
        variants.push(AlgorithmKey {
            direction: Direction::Forward,
            ..base
        });
        variants.push(AlgorithmKey {
            input: [16, 56, 56, 64],
            ..base
        });
        variants.push(AlgorithmKey {
            filter: [128, 3, 3, 64],
            ..base
        });
        variants.push(AlgorithmKey {
            stride: [2, 2],
            ..base
        });
        variants.push(AlgorithmKey {
            padding: [0, 0],
            ..base
        });
        variants.push(AlgorithmKey {
            precision: Precision::Bf16,
            ..base
        });
        variants.push(AlgorithmKey {
            allow_tf32: true,
            ..base
        });
        variants.push(AlgorithmKey {
            policy: AlgorithmPolicy {
                search: Search::Benchmark,
                deterministic_only: true,
            },
            ..base
        });
        let distinct: HashSet<AlgorithmKey> = variants.iter().copied().collect();
        assert_eq!(distinct.len(), variants.len());
        assert!(distinct.contains(&key(Precision::F32, false, true)));
    }

    #[test]
    fn the_policy_comes_from_two_variables_and_rejects_anything_else() {
        let p = |b, d| AlgorithmPolicy::parse(b, d);
        assert_eq!(p(None, None).unwrap(), AlgorithmPolicy::default());
        assert_eq!(p(Some("0"), Some("")).unwrap(), AlgorithmPolicy::default());
        let fast = p(Some("1"), Some("0")).unwrap();
        assert_eq!(fast.search, Search::Benchmark);
        assert!(!fast.deterministic_only);
        let e = p(Some("yes"), None).unwrap_err().to_string();
        assert!(e.contains("THAW_CUDNN_BENCHMARK=\"yes\""), "{e}");
        assert!(e.contains("unset it"), "{e}");
        assert!(p(None, Some("true")).is_err());
    }

    #[test]
    fn perf_results_become_candidates_field_by_field() {
        // SAFETY: all-zero is a valid perf struct (every enum has a 0 variant).
        let mut perf: cudnnConvolutionFwdAlgoPerf_t = unsafe { std::mem::zeroed() };
        perf.algo = cudnnConvolutionFwdAlgo_t::CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD;
        perf.memory = 4096;
        perf.time = 0.5;
        perf.determinism = cudnnDeterminism_t::CUDNN_DETERMINISTIC;
        perf.mathType = CUDNN_FMA_MATH;
        let c = Candidate::from(perf);
        assert_eq!(c.algo, perf.algo);
        assert_eq!(c.workspace_bytes, 4096);
        assert_eq!(c.time_ms, 0.5);
        assert_eq!(c.math, CUDNN_FMA_MATH);
        assert_eq!(c.status, cudnnStatus_t::CUDNN_STATUS_SUCCESS);
    }

    #[test]
    fn the_descriptor_starts_with_fma_unless_tf32_or_16_bit() {
        assert_eq!(base_math(Precision::F32, false), CUDNN_FMA_MATH);
        assert_eq!(base_math(Precision::F32, true), CUDNN_DEFAULT_MATH);
        assert_eq!(base_math(Precision::Bf16, false), CUDNN_TENSOR_OP_MATH);
    }
}
