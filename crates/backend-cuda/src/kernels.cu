// Kernels of the CUDA backend, compiled by NVRTC for the local GPU at build time. `T` is the
// activation storage type: float, or half kept as its 16-bit pattern (converted with PTX `cvt`, so
// no CUDA header is needed). Arithmetic is always in f32. Operation codes match src/program.rs.

#ifdef TAO_HALF
typedef unsigned short T;
__device__ __forceinline__ float ld(const T* p, long long i) {
    float f;
    unsigned short h = p[i];
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
}
__device__ __forceinline__ void st(T* p, long long i, float f) {
    unsigned short h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
    p[i] = h;
}
#else
typedef float T;
__device__ __forceinline__ float ld(const T* p, long long i) { return p[i]; }
__device__ __forceinline__ void st(T* p, long long i, float f) { p[i] = f; }
#endif

#define MAX_RANK 6
// Most channels of a space-to-depth input (program::S2D_MAX_CHANNELS).
#define S2D_MAX 16

struct Map {
    int rank;
    int pad0;
    long long dims[MAX_RANK];
    long long d[MAX_RANK];
    long long a[MAX_RANK];
    long long b[MAX_RANK];
    long long d_off;
    long long a_off;
    long long b_off;
    long long count;
};

struct PadMap {
    Map m;
    long long src_dims[MAX_RANK];
    long long begin[MAX_RANK];
};

struct ReduceMap {
    int kept_rank;
    int red_rank;
    long long kept[MAX_RANK];
    long long kept_src[MAX_RANK];
    long long kept_dst[MAX_RANK];
    long long red[MAX_RANK];
    long long red_src[MAX_RANK];
    long long red_dst[MAX_RANK];
    long long groups;
    long long group_len;
};

struct PoolParams {
    int n, h, w, c, oh, ow;
    int kh, kw, sh, sw, dh, dw;
    int pt, pl, pb, pr;
    int max, include_pad;
};

__device__ __forceinline__ void offsets(const Map& m, long long i, long long& od, long long& oa,
                                        long long& ob) {
    od = m.d_off;
    oa = m.a_off;
    ob = m.b_off;
    for (int k = m.rank - 1; k >= 0; --k) {
        long long c = i % m.dims[k];
        i /= m.dims[k];
        od += c * m.d[k];
        oa += c * m.a[k];
        ob += c * m.b[k];
    }
}

__device__ float unary_f(int op, float x, float p0, float p1) {
    switch (op) {
        case 0: return x;
        case 1: return fmaxf(x, 0.0f);
        case 2: return fminf(fmaxf(x, p0), p1);
        case 3: return 1.0f / (1.0f + expf(-x));
        case 4: return tanhf(x);
        case 5: return x < 0.0f ? p0 * x : x;
        case 6: return expf(x);
        case 7: return logf(x);
        case 8: return sqrtf(x);
        case 9: return 1.0f / x;
        case 10: return -x;
        case 11: return fabsf(x);
        case 12: return x > 20.0f ? x : log1pf(expf(x));
        case 13: return floorf(x);
        case 14: return ceilf(x);
        case 15: return x < 0.0f ? p0 * expm1f(x) : x;
        case 16: return fminf(fmaxf(p0 * x + p1, 0.0f), 1.0f);
        case 17: return x * fminf(fmaxf(x / 6.0f + 0.5f, 0.0f), 1.0f);
        case 18: return erff(x);
        case 19: return x / (1.0f + fabsf(x));
        case 20: return x > 0.0f ? 1.0f : (x < 0.0f ? -1.0f : 0.0f);
        case 21: return rintf(x);
        case 22: return x > 0.0f ? p1 * x : p1 * p0 * expm1f(x);
        case 23: return sinf(x);
        case 24: return cosf(x);
        default: return __int_as_float(0x7fc00000);
    }
}

__device__ __forceinline__ float binary_f(int op, float a, float b) {
    switch (op) {
        case 0: return a + b;
        case 1: return a - b;
        case 2: return a * b;
        case 3: return a / b;
        case 4: return powf(a, b);
        case 5: return fmaxf(a, b);
        case 6: return fminf(a, b);
        case 7: return a < 0.0f ? a * b : a;
        default: return __int_as_float(0x7fc00000);
    }
}

#define GRID_LOOP(i, n)                                                             \
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < (n); \
         i += (long long)gridDim.x * blockDim.x)

extern "C" __global__ void k_cast_in(const float* __restrict__ x, T* __restrict__ y, Map m) {
    GRID_LOOP(i, m.count) {
        long long od, oa, ob;
        offsets(m, i, od, oa, ob);
        st(y, od, x[oa]);
    }
}

// FP32 NCHW images into NHWC with `cpad` >= `c` channels, the extra ones zero. One thread per
// pixel: reads are coalesced along the pixels of each plane.
extern "C" __global__ void k_cast_in_nhwc(const float* __restrict__ x, T* __restrict__ y,
                                          long long pixels, int c, int cpad, long long hw) {
    GRID_LOOP(i, pixels) {
        long long n = i / hw;
        long long p = i - n * hw;
        const float* src = x + n * c * hw + p;
        T* dst = y + i * cpad;
        for (int ch = 0; ch < cpad; ++ch) st(dst, ch, ch < c ? src[ch * hw] : 0.0f);
    }
}

#ifdef TAO_HALF
__device__ __forceinline__ unsigned int pack2(float lo, float hi) {
    unsigned short a, b;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(a) : "f"(lo));
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(b) : "f"(hi));
    return (unsigned int)a | ((unsigned int)b << 16);
}
#endif

// FP32 NCHW images rearranged for a stride-2 convolution run with stride 1 (space to depth, see
// Step::CastInSpaceToDepth): output pixel (b, x) holds channel (qy*2+qx)*c + ch = input
// (ch, 2b+qy-sy, 2x+qx-sx), zero outside the image and past 4c. One thread per output pixel:
// neighbouring threads read neighbouring input pairs and write whole 16-byte vectors.
extern "C" __global__ void k_cast_in_s2d(const float* __restrict__ x, T* __restrict__ y,
                                         long long pixels, int c, int cpad, int h, int w,
                                         int rows, int cols, int sy, int sx) {
    GRID_LOOP(i, pixels) {
        int col = (int)(i % cols);
        long long r = i / cols;
        int row = (int)(r % rows);
        long long n = r / rows;
        const float* img = x + n * c * h * w;
        // Unrolled to S2D_MAX so that v stays in registers (the plan validator bounds cpad).
        float v[S2D_MAX];
#pragma unroll
        for (int ch = 0; ch < S2D_MAX; ++ch) {
            int q = ch / c, ci = ch - q * c;
            int iy = 2 * row + (q >> 1) - sy;
            int ix = 2 * col + (q & 1) - sx;
            bool inside = ch < cpad && q < 4 && iy >= 0 && iy < h && ix >= 0 && ix < w;
            v[ch] = inside ? img[((long long)ci * h + iy) * w + ix] : 0.0f;
        }
#ifdef TAO_HALF
        uint4* dst = (uint4*)(y + i * cpad);
#pragma unroll
        for (int g = 0; g < S2D_MAX / 8; ++g)
            if (g < cpad / 8) {
                uint4 u;
                u.x = pack2(v[8 * g], v[8 * g + 1]);
                u.y = pack2(v[8 * g + 2], v[8 * g + 3]);
                u.z = pack2(v[8 * g + 4], v[8 * g + 5]);
                u.w = pack2(v[8 * g + 6], v[8 * g + 7]);
                dst[g] = u;
            }
#else
        float4* dst = (float4*)(y + i * cpad);
#pragma unroll
        for (int g = 0; g < S2D_MAX / 4; ++g)
            if (g < cpad / 4) {
                float4 u;
                u.x = v[4 * g];
                u.y = v[4 * g + 1];
                u.z = v[4 * g + 2];
                u.w = v[4 * g + 3];
                dst[g] = u;
            }
#endif
    }
}

extern "C" __global__ void k_cast_out(const T* __restrict__ x, float* __restrict__ y, Map m) {
    GRID_LOOP(i, m.count) {
        long long od, oa, ob;
        offsets(m, i, od, oa, ob);
        y[od] = ld(x, oa);
    }
}

extern "C" __global__ void k_copy(const T* __restrict__ x, T* __restrict__ y, Map m) {
    GRID_LOOP(i, m.count) {
        long long od, oa, ob;
        offsets(m, i, od, oa, ob);
        y[od] = x[oa];
    }
}

// k_copy in 16-byte units: the map's strides and offsets count uint4s (see Walk::vectorised).
extern "C" __global__ void k_copy16(const uint4* __restrict__ x, uint4* __restrict__ y, Map m) {
    GRID_LOOP(i, m.count) {
        long long od, oa, ob;
        offsets(m, i, od, oa, ob);
        y[od] = x[oa];
    }
}

extern "C" __global__ void k_unary(const T* __restrict__ x, T* __restrict__ y, Map m, int op,
                                   float p0, float p1) {
    GRID_LOOP(i, m.count) {
        long long od, oa, ob;
        offsets(m, i, od, oa, ob);
        st(y, od, unary_f(op, ld(x, oa), p0, p1));
    }
}

extern "C" __global__ void k_binary(const T* __restrict__ a, const T* __restrict__ b,
                                    T* __restrict__ y, Map m, int op) {
    GRID_LOOP(i, m.count) {
        long long od, oa, ob;
        offsets(m, i, od, oa, ob);
        st(y, od, binary_f(op, ld(a, oa), ld(b, ob)));
    }
}

extern "C" __global__ void k_pad(const T* __restrict__ x, T* __restrict__ y, PadMap p,
                                 float value) {
    GRID_LOOP(i, p.m.count) {
        long long rest = i, od = 0, oa = 0;
        bool inside = true;
        for (int k = p.m.rank - 1; k >= 0; --k) {
            long long c = rest % p.m.dims[k];
            rest /= p.m.dims[k];
            od += c * p.m.d[k];
            long long s = c - p.begin[k];
            if (s < 0 || s >= p.src_dims[k]) inside = false;
            oa += s * p.m.a[k];
        }
        if (inside) {
            y[od] = x[oa];
        } else {
            st(y, od, value);
        }
    }
}

// Bias, activation and residual after a convolution that wrote `y` (NHWC, channels innermost).
// residual_mode: 0 none, 1 before the activation, 2 after it.
extern "C" __global__ void k_epilogue(T* __restrict__ y, const float* __restrict__ bias,
                                      const T* __restrict__ z, long long count, int channels,
                                      int act, float p0, float p1, int residual_mode) {
    GRID_LOOP(i, count) {
        float v = ld(y, i);
        if (bias) v += bias[i % channels];
        if (residual_mode == 1) v += ld(z, i);
        v = unary_f(act, v, p0, p1);
        if (residual_mode == 2) v += ld(z, i);
        st(y, i, v);
    }
}

extern "C" __global__ void k_pool(const T* __restrict__ x, T* __restrict__ y, PoolParams p) {
    long long count = (long long)p.n * p.oh * p.ow * p.c;
    GRID_LOOP(i, count) {
        int ch = (int)(i % p.c);
        long long r = i / p.c;
        int ox = (int)(r % p.ow);
        r /= p.ow;
        int oy = (int)(r % p.oh);
        int n = (int)(r / p.oh);
        float acc = p.max ? -__int_as_float(0x7f800000) : 0.0f;
        int counted = 0;
        for (int ky = 0; ky < p.kh; ++ky) {
            int iy = oy * p.sh + ky * p.dh - p.pt;
            for (int kx = 0; kx < p.kw; ++kx) {
                int ix = ox * p.sw + kx * p.dw - p.pl;
                bool inside = iy >= 0 && iy < p.h && ix >= 0 && ix < p.w;
                bool in_pad = iy >= -p.pt && iy < p.h + p.pb && ix >= -p.pl && ix < p.w + p.pr;
                if (inside) {
                    float v = ld(x, (((long long)n * p.h + iy) * p.w + ix) * p.c + ch);
                    acc = p.max ? fmaxf(acc, v) : acc + v;
                    counted++;
                } else if (in_pad && p.include_pad) {
                    counted++;
                }
            }
        }
        if (!p.max) acc /= (float)(counted > 0 ? counted : 1);
        st(y, i, acc);
    }
}

extern "C" __global__ void k_global_pool(const T* __restrict__ x, T* __restrict__ y, int n,
                                         int hw, int c, int max) {
    GRID_LOOP(i, (long long)n * c) {
        long long img = i / c;
        int ch = (int)(i % c);
        float acc = max ? -__int_as_float(0x7f800000) : 0.0f;
        for (int p = 0; p < hw; ++p) {
            float v = ld(x, (img * hw + p) * c + ch);
            acc = max ? fmaxf(acc, v) : acc + v;
        }
        if (!max) acc /= (float)hw;
        st(y, i, acc);
    }
}

__device__ __forceinline__ long long decompose(long long i, int rank, const long long* dims,
                                               const long long* strides) {
    long long o = 0;
    for (int k = rank - 1; k >= 0; --k) {
        long long c = i % dims[k];
        i /= dims[k];
        o += c * strides[k];
    }
    return o;
}

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
__device__ __forceinline__ float warp_min(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fminf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
__device__ __forceinline__ float warp_prod(float v) {
    for (int o = 16; o > 0; o >>= 1) v *= __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// One warp per group. kind: 0 sum, 1 mean, 2 max, 3 min, 4 prod, 5 l1, 6 l2, 7 log-sum,
// 8 log-sum-exp, 9 sum of squares.
extern "C" __global__ void k_reduce(const T* __restrict__ x, T* __restrict__ y, ReduceMap r,
                                    int kind) {
    int lane = threadIdx.x & 31;
    long long warp = ((long long)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    long long warps = ((long long)gridDim.x * blockDim.x) >> 5;
    for (long long g = warp; g < r.groups; g += warps) {
        long long base = decompose(g, r.kept_rank, r.kept, r.kept_src);
        float m = -__int_as_float(0x7f800000);
        if (kind == 8) {
            for (long long j = lane; j < r.group_len; j += 32)
                m = fmaxf(m, ld(x, base + decompose(j, r.red_rank, r.red, r.red_src)));
            m = warp_max(m);
        }
        float acc = kind == 2 ? -__int_as_float(0x7f800000)
                  : kind == 3 ? __int_as_float(0x7f800000)
                  : kind == 4 ? 1.0f : 0.0f;
        for (long long j = lane; j < r.group_len; j += 32) {
            float v = ld(x, base + decompose(j, r.red_rank, r.red, r.red_src));
            switch (kind) {
                case 2: acc = fmaxf(acc, v); break;
                case 3: acc = fminf(acc, v); break;
                case 4: acc *= v; break;
                case 5: acc += fabsf(v); break;
                case 6: case 9: acc += v * v; break;
                case 8: acc += expf(v - m); break;
                default: acc += v;
            }
        }
        float t = kind == 2 ? warp_max(acc) : kind == 3 ? warp_min(acc)
                : kind == 4 ? warp_prod(acc) : warp_sum(acc);
        if (kind == 1) t /= (float)r.group_len;
        if (kind == 6) t = sqrtf(t);
        if (kind == 7) t = logf(t);
        if (kind == 8) t = m + logf(t);
        if (lane == 0) st(y, decompose(g, r.kept_rank, r.kept, r.kept_dst), t);
    }
}

extern "C" __global__ void k_softmax(const T* __restrict__ x, T* __restrict__ y, ReduceMap r,
                                     int log_softmax) {
    int lane = threadIdx.x & 31;
    long long warp = ((long long)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    long long warps = ((long long)gridDim.x * blockDim.x) >> 5;
    for (long long g = warp; g < r.groups; g += warps) {
        long long src = decompose(g, r.kept_rank, r.kept, r.kept_src);
        long long dst = decompose(g, r.kept_rank, r.kept, r.kept_dst);
        float m = -__int_as_float(0x7f800000);
        for (long long j = lane; j < r.group_len; j += 32)
            m = fmaxf(m, ld(x, src + decompose(j, r.red_rank, r.red, r.red_src)));
        m = warp_max(m);
        float s = 0.0f;
        for (long long j = lane; j < r.group_len; j += 32)
            s += expf(ld(x, src + decompose(j, r.red_rank, r.red, r.red_src)) - m);
        s = warp_sum(s);
        float ls = logf(s);
        for (long long j = lane; j < r.group_len; j += 32) {
            float v = ld(x, src + decompose(j, r.red_rank, r.red, r.red_src)) - m;
            st(y, dst + decompose(j, r.red_rank, r.red, r.red_dst),
               log_softmax ? v - ls : expf(v) / s);
        }
    }
}

// Deterministic values in [-1, 1) for timing candidates on data that is not all zeros.
extern "C" __global__ void k_fill(T* __restrict__ y, long long count, unsigned int seed) {
    GRID_LOOP(i, count) {
        unsigned int h = (unsigned int)i * 2654435761u ^ seed;
        h ^= h >> 15;
        h *= 2246822519u;
        h ^= h >> 13;
        st(y, i, (float)(h >> 8) * (2.0f / 16777216.0f) - 1.0f);
    }
}

// DetectNet_v2 grid decode (src/detectnet.rs): one thread per (image, class, cell); a cell above
// its class's threshold appends one candidate {image, class, cell, confidence, x, y, w, h}.
struct DecodeParams {
    int batch, classes, gh, gw;
    float sx, sy, norm, max_x, max_y;
    float thr[16];
};

extern "C" __global__ void k_detectnet_decode(const float* __restrict__ cov,
                                              const float* __restrict__ box, DecodeParams p,
                                              unsigned int* __restrict__ count,
                                              unsigned int* __restrict__ out,
                                              unsigned int capacity) {
    long long cells = (long long)p.gh * p.gw;
    GRID_LOOP(i, (long long)p.batch * p.classes * cells) {
        long long cell = i % cells;
        long long ic = i / cells;
        int cls = (int)(ic % p.classes);
        long long img = ic / p.classes;
        float conf = cov[i];
        if (!(conf > p.thr[cls])) continue;  // NaN is no detection either
        const float* b = box + (img * 4 * p.classes + 4 * cls) * cells + cell;
        float cx = (float)(cell % p.gw) * p.sx + 0.5f;
        float cy = (float)(cell / p.gw) * p.sy + 0.5f;
        float x1 = fminf(fmaxf(cx - b[0] * p.norm, 0.0f), p.max_x);
        float y1 = fminf(fmaxf(cy - b[cells] * p.norm, 0.0f), p.max_y);
        float x2 = fminf(fmaxf(cx + b[2 * cells] * p.norm, 0.0f), p.max_x);
        float y2 = fminf(fmaxf(cy + b[3 * cells] * p.norm, 0.0f), p.max_y);
        if (!(x2 > x1 && y2 > y1)) continue;
        unsigned int slot = atomicAdd(count, 1u);
        if (slot >= capacity) continue;
        unsigned int* c = out + 8ull * slot;
        c[0] = (unsigned int)img;
        c[1] = (unsigned int)cls;
        c[2] = (unsigned int)cell;
        c[3] = __float_as_uint(conf);
        c[4] = __float_as_uint(x1);
        c[5] = __float_as_uint(y1);
        c[6] = __float_as_uint(x2 - x1);
        c[7] = __float_as_uint(y2 - y1);
    }
}
