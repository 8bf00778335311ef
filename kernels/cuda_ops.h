/* cuda_ops.h - the C face of the CUDA backend (kernels/ *.cu files): every op as
 * an extern "C" function on device pointers, queued on the backend's one
 * stream. Each op family's header lists its functions (ggml style: one
 * .cu + .cuh per family); this header includes them all and is what
 * src/backend/backend_cuda.c includes.
 *
 * Contracts are those of the CPU twins named in each header (ops/ops.h,
 * ops/quant.h, loss.h, adamw.h, bitlinear.h), including accumulate (+=)
 * versus overwrite and NULL meaning "skip".
 *
 * Errors: ops return void (or a value read back from the device) and record
 * the first failure, with the kernels/ file and line, for bl_cuda_sync. */
#ifndef BITLAB_CUDA_OPS_H
#define BITLAB_CUDA_OPS_H

#include "context.cuh"
#include "matmul.cuh"
#include "rmsnorm.cuh"
#include "rope.cuh"
#include "attention.cuh"
#include "swiglu.cuh"
#include "embed.cuh"
#include "tensor.cuh"
#include "quant.cuh"
#include "ternary_gemm.cuh"
#include "loss.cuh"
#include "adamw.cuh"
#include "gradnorm.cuh"

#endif
