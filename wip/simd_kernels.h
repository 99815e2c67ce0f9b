/* wip/simd_kernels.h: work in progress */
