//! The CUDA backend against whatever this machine has: with no driver (CI, these machines) every
//! entry point must answer a typed `NoDriver`, never panic; with NVRTC on the loader path the
//! embedded kernel source must compile at run time; with a GPU the kernel must match the CPU
//! emulation of the same source. Parts that need what is absent say so and skip.
#![cfg(feature = "cuda")]

/// Named `cuda::` so CI can select these with the unit tests (`cargo test ... cuda::`).
mod cuda {
    use zerohop_engine::cuda::CudaError;
    use zerohop_engine::cuda::driver::{self, Gpu};
    use zerohop_engine::cuda::nvdec::CuvidApi;
    use zerohop_engine::cuda::nvenc::NvencApi;

    fn has_driver() -> bool {
        match driver::driver() {
            Ok(()) => true,
            Err(e) => {
                assert!(matches!(e, CudaError::NoDriver { .. }), "a missing driver must be NoDriver, got {e}");
                false
            }
        }
    }

    #[test]
    fn a_missing_driver_is_a_typed_error_everywhere() {
        if has_driver() {
            eprintln!("skipped: this machine has a CUDA driver (see gpu_kernel_matches_the_cpu_emulation)");
            return;
        }
        for r in [driver::device_count().map(|_| ()), driver::gpus(4).map(|_| ()), Gpu::open(0).map(|_| ())] {
            let e = r.expect_err("no driver");
            assert!(matches!(e, CudaError::NoDriver { lib: "libcuda.so.1", .. }), "{e}");
            assert_eq!(e.code(), "gpu_unavailable");
            assert!(e.to_string().contains("no NVIDIA driver"), "the message says what is missing: {e}");
        }
        // The video libraries are optional parts of the driver: each missing one is its own error.
        let e = NvencApi::load().expect_err("no libnvidia-encode");
        assert!(matches!(e, CudaError::NoDriver { lib: "libnvidia-encode.so.1", .. }), "{e}");
        let e = CuvidApi::load().expect_err("no libnvcuvid");
        assert!(matches!(e, CudaError::NoDriver { lib: "libnvcuvid.so.1", .. }), "{e}");
    }

    #[test]
    fn nvrtc_compiles_the_embedded_kernel_source_at_run_time() {
        if zerohop_kernels::PTX.is_some() {
            eprintln!("skipped: this build embeds PTX from nvcc");
            return;
        }
        for arch in ["compute_75", "compute_90"] {
            match driver::ladder_ptx(arch) {
                Ok(ptx) => {
                    let text = ptx.to_src();
                    assert!(text.contains(".entry zh_scale_ladder_nv12"), "entry point in PTX");
                    let sm = arch.replace("compute_", "sm_");
                    assert!(text.contains(&format!(".target {sm}")), "PTX for {sm}");
                    eprintln!("NVRTC at run time: {arch} -> {} bytes of PTX", text.len());
                }
                Err(CudaError::NoDriver { lib, .. }) => {
                    eprintln!("skipped: {lib} is not on the loader path (CI puts PyPI's there)");
                    return;
                }
                Err(e) => panic!("NVRTC failed on the kernel source: {e}"),
            }
        }
    }

    #[test]
    fn gpu_kernel_matches_the_cpu_emulation() {
        if !has_driver() {
            eprintln!("skipped: no CUDA driver on this machine (hw-ci/run runs this on GPU runners)");
            return;
        }
        let gpu = Gpu::open(0).expect("GPU 0 with the ladder kernel");
        let max = gpu.self_test().expect("GPU and emulated scale");
        assert!(max <= 1, "GPU and CPU emulation differ by {max}");
    }
}
