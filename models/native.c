/* The C side of models/native.py: one training step (forward and backward) of a fused MLP for every
   member in one call, and one optimizer step for every member's parameters in one call.

   The MLP step computes what models/fused_mlp.py's DenseStack.forward_cached and
   backward_cached compute with the bce loss, in the same layout: activations are
   [members, features, batch], weights [members, out, in] as torch.nn.Linear's.
   The batched matmuls are MKL's cblas_sgemm_batch, the very routine torch's
   own bmm calls on CPU (its address comes from torch's library); what this
   file saves is the ~45 separate torch operations of a step, each a few
   microseconds of dispatch, and the elementwise passes it merges. Built by
   models/native.py with the system's C compiler; IEEE arithmetic (no
   fast-math), so a NaN still spreads as it does in torch and marks the
   member as diverged. */
#include <math.h>
#include <stddef.h>

enum { ROW_MAJOR = 101, NO_TRANS = 111, TRANS = 112 };
enum { RELU = 0, LEAKY_RELU = 1, TANH = 2 };
#define MAX_LAYERS 32

typedef void (*gemm_batch_fn)(int layout, const int *transa, const int *transb, const int *m, const int *n,
                              const int *k, const float *alpha, const float **a, const int *lda, const float **b,
                              const int *ldb, const float *beta, float **c, const int *ldc, int groups,
                              const int *group_sizes);

typedef struct {
    gemm_batch_fn gemm;
    int members, layers, activation;
    float slope;                                  /* leaky_relu's negative slope */
    int width[MAX_LAYERS + 1];
    float *w[MAX_LAYERS], *gw[MAX_LAYERS];        /* [members, out, in], contiguous */
    float *b[MAX_LAYERS], *gb[MAX_LAYERS];        /* member e's bias: b[l] + e * bias_stride */
    long bias_stride;
    float *z[MAX_LAYERS], *h[MAX_LAYERS], *d[MAX_LAYERS];  /* [members, out, batch] each */
    float *dz, *dh;                               /* [members, widest, batch] scratch */
    float *dx;                                    /* NULL, or [members, features, batch]: the inputs' gradient */
    const float **pa, **pb;                       /* per-member operand pointers for the batched gemm */
    float **pc;
} Net;

size_t net_size(void) { return sizeof(Net); }

/* where net_step writes the gradient of its inputs (when the net is an LSTM's head), or NULL for none */
void net_set_input_gradient(Net *net, float *dx) { net->dx = dx; }

int net_init(Net *net, void *gemm, int members, int layers, const int *width, int activation, float slope,
             float **w, float **gw, float **b, float **gb, long bias_stride, float **z, float **h, float **d,
             float *dz, float *dh, const float **pa, const float **pb, float **pc) {
    if (layers < 1 || layers > MAX_LAYERS) return -1;
    net->gemm = (gemm_batch_fn)gemm;
    net->members = members;
    net->layers = layers;
    net->activation = activation;
    net->slope = slope;
    for (int l = 0; l <= layers; l++) net->width[l] = width[l];
    for (int l = 0; l < layers; l++) {
        net->w[l] = w[l]; net->gw[l] = gw[l]; net->b[l] = b[l]; net->gb[l] = gb[l];
        net->z[l] = z[l]; net->h[l] = h[l]; net->d[l] = d[l];
    }
    net->bias_stride = bias_stride;
    net->dz = dz; net->dh = dh;
    net->dx = NULL;
    net->pa = pa; net->pb = pb; net->pc = pc;
    return 0;
}

/* C_e = op(A_e) op(B_e) + beta C_e for every member e, operands `stride` floats apart */
static void gemm_each(gemm_batch_fn fn, int members, const float **pa, const float **pb, float **pc, int ta, int tb,
                      int m, int n, int k, const float *a, int lda, long sa, const float *b, int ldb, long sb,
                      float beta, float *c, int ldc, long sc) {
    float alpha = 1.0f;
    for (int e = 0; e < members; e++) {
        pa[e] = a + e * sa;
        pb[e] = b + e * sb;
        pc[e] = c + e * sc;
    }
    fn(ROW_MAJOR, &ta, &tb, &m, &n, &k, &alpha, pa, &lda, pb, &ldb, &beta, pc, &ldc, 1, &members);
}

static void gemm(const Net *net, int ta, int tb, int m, int n, int k, const float *a, int lda, long sa,
                 const float *b, int ldb, long sb, float beta, float *c, int ldc, long sc) {
    gemm_each(net->gemm, net->members, net->pa, net->pb, net->pc, ta, tb, m, n, k, a, lda, sa, b, ldb, sb, beta,
              c, ldc, sc);
}

/* 16 independent running sums the compiler keeps in one vector register */
static float row_sum(const float *p, int n) {
    float lane[16] = {0};
    int i = 0;
    for (; i + 16 <= n; i += 16)
        for (int k = 0; k < 16; k++) lane[k] += p[i + k];
    float s = 0.0f;
    for (int k = 0; k < 16; k++) s += lane[k];
    for (; i < n; i++) s += p[i];
    return s;
}

/* x: member e's feature f of batch row r at x[e * xs_e + f * xs_f + r * xs_r], with xs_f or xs_r equal to 1.
   y: y[e * ys + r]; logits written to out[e * os + r].
   keep: the dropout pool (models/dropout.py; NULL without dropout), whether member e keeps unit i at
   keep[e * keep_stride + i], and scale[e] its multiplier for a kept unit (0 for the others);
   offsets[l]: where hidden layer l's window starts in every row this step. */
void net_step(const Net *net, const float *x, long xs_e, long xs_f, long xs_r, const float *y, long ys, int batch,
              float *out, long os, const unsigned char *keep, long keep_stride, const float *scale,
              const long *offsets) {
    const int members = net->members, layers = net->layers, act = net->activation, B = batch;
    const float slope = net->slope;
    /* layer 0's input as a [features, batch] matrix per member */
    const int x_trans = xs_r != 1;              /* rows are the contiguous dimension: x holds [batch, features] */
    const int x_ld = (int)(x_trans ? xs_r : xs_f);

    for (int l = 0; l < layers; l++) {
        const int in = net->width[l], n_out = net->width[l + 1];
        float *z = net->z[l];
        for (int e = 0; e < members; e++) {
            const float *bias = net->b[l] + e * net->bias_stride;
            for (int o = 0; o < n_out; o++) {
                float *row = z + ((long)e * n_out + o) * B;
                const float v = bias[o];
                for (int r = 0; r < B; r++) row[r] = v;
            }
        }
        if (l == 0)
            gemm(net, NO_TRANS, x_trans ? TRANS : NO_TRANS, n_out, B, in, net->w[0], in, (long)n_out * in,
                 x, x_ld, xs_e, 1.0f, z, B, (long)n_out * B);
        else
            gemm(net, NO_TRANS, NO_TRANS, n_out, B, in, net->w[l], in, (long)n_out * in,
                 net->h[l - 1], B, (long)in * B, 1.0f, z, B, (long)n_out * B);
        if (l == layers - 1) break;
        float *h = net->h[l], *d = net->d[l];
        const long size = (long)n_out * B;
        for (int e = 0; e < members; e++) {
            const float *ze = z + e * size;
            float *he = h + e * size, *de = d + e * size;
            if (keep == NULL) {
                if (act == TANH) for (long i = 0; i < size; i++) he[i] = tanhf(ze[i]);
                else if (act == RELU) for (long i = 0; i < size; i++) he[i] = ze[i] <= 0.0f ? 0.0f : ze[i];  /* NaN stays NaN */
                else for (long i = 0; i < size; i++) he[i] = ze[i] > 0.0f ? ze[i] : ze[i] * slope;
                continue;
            }
            const unsigned char *k = keep + e * keep_stride + offsets[l];
            const float kept = scale[e];
            if (act == TANH) {          /* d keeps tanh(z); h = tanh(z) * mask */
                for (long i = 0; i < size; i++) {
                    const float a = tanhf(ze[i]);
                    de[i] = a;
                    he[i] = a * (k[i] ? kept : 0.0f);
                }
            } else {                    /* the mask folded into the slope (fused_mlp.py's MASKED_SLOPE) */
                for (long i = 0; i < size; i++) {
                    const float m = k[i] ? kept : 0.0f;
                    const float s = act == RELU ? (ze[i] <= 0.0f ? 0.0f : m) : (ze[i] > 0.0f ? m : m * slope);
                    de[i] = s;
                    he[i] = ze[i] * s;
                }
            }
        }
    }

    /* logits, and d(sum of members' mean bce)/d(logits) = (sigmoid - y) / batch */
    const float *logits = net->z[layers - 1];
    float *dz = net->dz;
    for (int e = 0; e < members; e++)
        for (int r = 0; r < B; r++) {
            const float v = logits[(long)e * B + r];
            out[e * os + r] = v;
            dz[(long)e * B + r] = (1.0f / (1.0f + expf(-v)) - y[e * ys + r]) / (float)B;
        }

    for (int l = layers - 1; l >= 0; l--) {
        const int in = net->width[l], n_out = net->width[l + 1];
        for (int e = 0; e < members; e++) {
            float *gb = net->gb[l] + e * net->bias_stride;
            for (int o = 0; o < n_out; o++) gb[o] = row_sum(dz + ((long)e * n_out + o) * B, B);
        }
        if (l == 0)
            gemm(net, NO_TRANS, x_trans ? NO_TRANS : TRANS, n_out, in, B, dz, B, (long)n_out * B,
                 x, x_ld, xs_e, 0.0f, net->gw[0], in, (long)n_out * in);
        else
            gemm(net, NO_TRANS, TRANS, n_out, in, B, dz, B, (long)n_out * B, net->h[l - 1], B, (long)in * B,
                 0.0f, net->gw[l], in, (long)n_out * in);
        if (l == 0 && net->dx == NULL) break;  /* the inputs need no gradient */
        float *dh = l == 0 ? net->dx : net->dh;
        if (n_out == 1) {               /* an outer product, as fused_mlp.py computes it */
            for (int e = 0; e < members; e++) {
                const float *we = net->w[l] + (long)e * in, *dze = dz + (long)e * B;
                float *dhe = dh + (long)e * in * B;
                for (int i = 0; i < in; i++)
                    for (int r = 0; r < B; r++) dhe[(long)i * B + r] = we[i] * dze[r];
            }
        } else {
            gemm(net, TRANS, NO_TRANS, in, B, n_out, net->w[l], in, (long)n_out * in, dz, B, (long)n_out * B,
                 0.0f, dh, B, (long)in * B);
        }
        if (l == 0) break;  /* the inputs' gradient is in net->dx */
        /* through the activation (and mask) of hidden layer l - 1 */
        const long size = (long)members * in * B;
        const float *zp = net->z[l - 1], *hp = net->h[l - 1], *dp = net->d[l - 1];
        if (keep != NULL && act != TANH) {
            for (long i = 0; i < size; i++) dz[i] = dh[i] * dp[i];
        } else if (keep != NULL) {      /* tanh with dropout: mask, then tanh's derivative at d = tanh(z) */
            const long per_member = (long)in * B;
            for (int e = 0; e < members; e++) {
                const unsigned char *k = keep + e * keep_stride + offsets[l - 1];
                const float kept = scale[e];
                for (long i = 0; i < per_member; i++) {
                    const long j = e * per_member + i;
                    const float g = dh[j] * (k[i] ? kept : 0.0f);
                    dz[j] = g * (1.0f - dp[j] * dp[j]);
                }
            }
        } else if (act == TANH) {
            for (long i = 0; i < size; i++) dz[i] = dh[i] * (1.0f - hp[i] * hp[i]);
        } else if (act == RELU) {
            for (long i = 0; i < size; i++) dz[i] = hp[i] <= 0.0f ? 0.0f : dh[i];
        } else {
            for (long i = 0; i < size; i++) dz[i] = zp[i] > 0.0f ? dh[i] : dh[i] * slope;
        }
    }
}


/* ------------------------------------------------------------------ optimizer
   One update of every member's parameters, each with its own rule, learning rate and weight decay:
   fused_optim.py's update rules (torch.optim's), in one pass over each parameter block instead of a
   torch kernel call per block and group of equal hyperparameters (~40 calls a step at 8 groups). */
enum { ADAM = 0, ADAMW = 1, RMSPROP = 2, SGD = 3, ADAGRAD = 4 };

typedef struct {
    int kind;
    float lr, l2;
} Rule;

/* block k: p[k], g[k], a[k] (first moment, momentum or squared-gradient sum), v[k] (second moment),
   each [members, width[k]], rows contiguous; step counts from 1. */
void optim_step(int members, int blocks, const long *width, float **p, float **g, float **a, float **v,
                const Rule *rules, long step, float beta1, float beta2, float adam_eps, float rmsprop_alpha,
                float rmsprop_eps, float momentum, float adagrad_eps) {
    const double correction1 = 1.0 - pow(beta1, (double)step), correction2 = 1.0 - pow(beta2, (double)step);
    const float correction2_sqrt = (float)sqrt(correction2);
    for (int k = 0; k < blocks; k++) {
        const long n = width[k];
        for (int e = 0; e < members; e++) {
            float *pe = p[k] + e * n, *ge = g[k] + e * n, *ae = a[k] + e * n, *ve = v[k] + e * n;
            const float lr = rules[e].lr, l2 = rules[e].l2;
            switch (rules[e].kind) {
            case ADAM:
            case ADAMW: {
                const float step_size = (float)(lr / correction1);
                const float decay = rules[e].kind == ADAMW ? 1.0f - lr * l2 : 1.0f;
                const float coupled = rules[e].kind == ADAM ? l2 : 0.0f;
                for (long i = 0; i < n; i++) {
                    const float grad = ge[i] + coupled * pe[i];
                    const float m = ae[i] + (1.0f - beta1) * (grad - ae[i]);
                    const float s = beta2 * ve[i] + (1.0f - beta2) * grad * grad;
                    ae[i] = m;
                    ve[i] = s;
                    pe[i] = pe[i] * decay - step_size * m / (sqrtf(s) / correction2_sqrt + adam_eps);
                }
                break;
            }
            case RMSPROP:
                for (long i = 0; i < n; i++) {
                    const float grad = ge[i] + l2 * pe[i];
                    const float s = rmsprop_alpha * ae[i] + (1.0f - rmsprop_alpha) * grad * grad;
                    ae[i] = s;
                    pe[i] -= lr * grad / (sqrtf(s) + rmsprop_eps);
                }
                break;
            case SGD:
                for (long i = 0; i < n; i++) {
                    const float grad = ge[i] + l2 * pe[i];
                    const float buf = step == 1 ? grad : momentum * ae[i] + grad;
                    ae[i] = buf;
                    pe[i] -= lr * buf;
                }
                break;
            case ADAGRAD:
                for (long i = 0; i < n; i++) {
                    const float grad = ge[i] + l2 * pe[i];
                    const float sum = ae[i] + grad * grad;
                    ae[i] = sum;
                    pe[i] -= lr * grad / (sqrtf(sum) + adagrad_eps);
                }
                break;
            }
        }
    }
}


/* ------------------------------------------------------------------ a block of steps
   net_step then optim_step for each batch of a block of gathered rows, so that a block of steps costs
   one call from Python rather than two per step (~25 us of Python a step between them). Batch s covers
   rows [s * batch, ...) of the block and reads its dropout windows at offsets + s * hidden layers
   (offsets is NULL without dropout). */
void net_train_block(const Net *net, const float *x, long xs_e, long xs_f, long xs_r, const float *y, long ys,
                     int width, int batch, float *out, long os, const unsigned char *keep, long keep_stride,
                     const float *scale, const long *offsets, int blocks, const long *block_width, float **p,
                     float **g, float **a, float **v, const Rule *rules, long first_step, const float *constants) {
    const int hidden = net->layers - 1;
    for (int s = 0, start = 0; start < width; s++, start += batch) {
        const int rows = width - start < batch ? width - start : batch;
        net_step(net, x + start * xs_r, xs_e, xs_f, xs_r, y + start, ys, rows, out + start, os, keep, keep_stride,
                 scale, offsets != NULL ? offsets + (long)s * hidden : NULL);
        optim_step(net->members, blocks, block_width, p, g, a, v, rules, first_step + s, constants[0], constants[1],
                   constants[2], constants[3], constants[4], constants[5], constants[6]);
    }
}

/* ------------------------------------------------------------------ LSTM layer
   One LSTM layer over a whole sequence for every member, forward and backward (models/fused_lstm.py's
   NativeLSTMLayer), computing what torch.lstm computes with torch's gate order (input, forget, cell,
   output) and a single bias. The recurrence is row-local (row r's state at step t needs only row r's at
   t - 1), so each member runs a few rows through all its steps while their states stay in the L1 cache,
   and the small matmuls are written out here with the accumulators in vector registers: on these shapes
   (a 32 x 16 by 16 x 64 matmul per step) a library gemm call costs more in packing and dispatch than
   the arithmetic. Layouts, all float32 and contiguous within a member:
     x     [members, steps, batch, n_in]        (member stride sx, given)
     w_ih  [members, n_in, 4H], w_hh [members, H, 4H], bias [members, 4H]  (member strides given)
     hs    [members, steps + 1, batch, H]       hidden states, hs[:, 0] = 0 (h0, written by lstm_forward)
     cs    [members, steps + 1, batch, H]       cell states, cs[:, 0] = 0 (c0, likewise)
     tcs   [members, steps, batch, H]           tanh of each new cell state (the backward pass reuses it)
     acts  [members, steps, batch, 4H]          the gates after their activations */

/* glibc's vector expf (libmvec): with this declaration the compiler turns the gate loops below into
   8- or 16-wide calls; a scalar expf per gate was most of the layer's time. IEEE results (NaN spreads). */
float expf(float) __attribute__((simd("notinbranch")));

static inline float sigmoidf(float v) { return 1.0f / (1.0f + expf(-v)); }
static inline float tanh_via_exp(float v) { return 2.0f / (1.0f + expf(-2.0f * v)) - 1.0f; }

/* LANES floats in one vector (GCC and Clang vector extensions: one AVX-512 register, or two AVX2 ones);
   unaligned loads and stores allowed */
#define LANES 16
typedef float vec __attribute__((vector_size(LANES * sizeof(float)), aligned(4)));
#define ROWS 4  /* rows a kernel below works on at once: ROWS x (columns / LANES) accumulators */

/* out[r, :n] = (accumulate ? out[r, :n] : first) + sum_k a[r, k] b[k, :n] for `rows` rows (ROWS or 1, a
   constant once inlined, so the accumulators stay in registers); `first` [n] or NULL for zeros. */
static inline void rows_times(int rows, int k_len, int n, const float *restrict a, long sar, const float *restrict b,
                              const float *restrict first, int accumulate, float *restrict out, long sor) {
    int j0 = 0;
    for (; j0 + LANES <= n; j0 += LANES) {
        vec acc[ROWS];
        for (int r = 0; r < rows; r++)
            acc[r] = accumulate ? *(const vec *)(out + r * sor + j0) : first ? *(const vec *)(first + j0) : (vec){0};
        for (int k = 0; k < k_len; k++) {
            vec w = *(const vec *)(b + (long)k * n + j0);
            for (int r = 0; r < rows; r++) acc[r] += a[r * sar + k] * w;
        }
        for (int r = 0; r < rows; r++) *(vec *)(out + r * sor + j0) = acc[r];
    }
    for (; j0 < n; j0++)  /* columns past the last whole vector */
        for (int r = 0; r < rows; r++) {
            float v = accumulate ? out[r * sor + j0] : first ? first[j0] : 0.0f;
            for (int k = 0; k < k_len; k++) v += a[r * sar + k] * b[(long)k * n + j0];
            out[r * sor + j0] = v;
        }
}

/* the same for `rows` rows in blocks of ROWS */
static void block_times(int rows, int k_len, int n, const float *a, long sar, const float *b, const float *first,
                        int accumulate, float *out, long sor) {
    int r = 0;
    for (; r + ROWS <= rows; r += ROWS)
        rows_times(ROWS, k_len, n, a + r * sar, sar, b, first, accumulate, out + r * sor, sor);
    for (; r < rows; r++)
        rows_times(1, k_len, n, a + r * sar, sar, b, first, accumulate, out + r * sor, sor);
}

/* out[k, :n] = sum over `rows` rows of a[r, k] d[r, :n], for k < k_len: a weight's gradient over all steps */
#define OUTER 16  /* rows of `out` accumulated at once */
static inline void outer_rows(int ks, long rows, const float *restrict a, long sar, const float *restrict d, long sdr,
                              int n, float *restrict out) {
    int j0 = 0;
    for (; j0 + LANES <= n; j0 += LANES) {
        vec acc[OUTER];
        for (int k = 0; k < ks; k++) acc[k] = (vec){0};
        for (long r = 0; r < rows; r++) {
            vec dv = *(const vec *)(d + r * sdr + j0);
            for (int k = 0; k < ks; k++) acc[k] += a[r * sar + k] * dv;
        }
        for (int k = 0; k < ks; k++) *(vec *)(out + (long)k * n + j0) = acc[k];
    }
    for (; j0 < n; j0++)
        for (int k = 0; k < ks; k++) {
            float v = 0.0f;
            for (long r = 0; r < rows; r++) v += a[r * sar + k] * d[r * sdr + j0];
            out[(long)k * n + j0] = v;
        }
}

static void outer_sum(int k_len, long rows, const float *a, long sar, const float *d, long sdr, int n, float *out) {
    int k = 0;
    for (; k + OUTER <= k_len; k += OUTER) outer_rows(OUTER, rows, a + k, sar, d, sdr, n, out + (long)k * n);
    for (; k < k_len; k++) outer_rows(1, rows, a + k, sar, d, sdr, n, out + (long)k * n);
}

/* out[:n] = sum over `rows` rows of d[r, :n] (a bias's gradient over all steps), in registers: four running sums
   per vector of columns, so that each addition waits for the one four rows back rather than for the last */
static void column_sums(long rows, const float *restrict d, long sdr, int n, float *restrict out) {
    int j0 = 0;
    for (; j0 + LANES <= n; j0 += LANES) {
        vec acc[4] = {{0}, {0}, {0}, {0}};
        long r = 0;
        for (; r + 4 <= rows; r += 4)
            for (int q = 0; q < 4; q++) acc[q] += *(const vec *)(d + (r + q) * sdr + j0);
        for (; r < rows; r++) acc[0] += *(const vec *)(d + r * sdr + j0);
        *(vec *)(out + j0) = (acc[0] + acc[1]) + (acc[2] + acc[3]);
    }
    for (; j0 < n; j0++) {
        float v = 0.0f;
        for (long r = 0; r < rows; r++) v += d[r * sdr + j0];
        out[j0] = v;
    }
}

/* one row of one time step: the gates' activations (in place) and the next cell and hidden state */
static void lstm_cell_row(int hidden, float *restrict a, const float *restrict c_prev, float *restrict c_next,
                          float *restrict tanh_c, float *restrict h_next) {
    for (int j = 0; j < 2 * hidden; j++) a[j] = sigmoidf(a[j]);               /* input and forget gates */
    for (int j = 2 * hidden; j < 3 * hidden; j++) a[j] = tanh_via_exp(a[j]);  /* the cell's candidate */
    for (int j = 3 * hidden; j < 4 * hidden; j++) a[j] = sigmoidf(a[j]);      /* output gate */
    for (int j = 0; j < hidden; j++) {
        float c = a[hidden + j] * c_prev[j] + a[j] * a[2 * hidden + j];
        float tc = tanh_via_exp(c);
        c_next[j] = c;
        tanh_c[j] = tc;
        h_next[j] = a[3 * hidden + j] * tc;
    }
}

void lstm_forward(int members, int steps, int batch, int n_in, int hidden, const float *x, long sx, const float *w_ih,
                  long sw_ih, const float *w_hh, long sw_hh, const float *bias, long sb, float *hs, float *cs,
                  float *tcs, float *acts) {
    int g4 = 4 * hidden;
    long sh = (long)(steps + 1) * batch * hidden, sa = (long)steps * batch * g4;
    long st = (long)steps * batch * hidden;
    for (int e = 0; e < members; e++) {
        const float *xe = x + e * sx, *wi = w_ih + e * sw_ih, *wh = w_hh + e * sw_hh, *be = bias + e * sb;
        float *he = hs + e * sh, *ce = cs + e * sh, *te = tcs + e * st, *ae = acts + e * sa;
        for (long n = 0; n < (long)batch * hidden; n++) he[n] = ce[n] = 0.0f;  /* h0 and c0 */
        for (int r0 = 0; r0 < batch; r0 += ROWS) {
            int rows = batch - r0 < ROWS ? batch - r0 : ROWS;
            for (int t = 0; t < steps; t++) {
                long row = (long)t * batch + r0;  /* this block's first row at step t */
                float *a = ae + row * g4;
                /* pre-activations: bias + x_t W_ih + h_{t-1} W_hh */
                block_times(rows, n_in, g4, xe + row * n_in, n_in, wi, be, 0, a, g4);
                block_times(rows, hidden, g4, he + row * hidden, hidden, wh, NULL, 1, a, g4);
                for (int r = 0; r < rows; r++)
                    lstm_cell_row(hidden, a + r * g4, ce + (row + r) * hidden, ce + (row + batch + r) * hidden,
                                  te + (row + r) * hidden, he + (row + batch + r) * hidden);
            }
        }
    }
}

/* one row of one time step backward: the gates' pre-activation gradients, and dh, dc carried back */
static void lstm_cell_row_backward(int hidden, const float *restrict a, const float *restrict c_prev,
                                   const float *restrict tanh_c, const float *restrict dy, float *restrict dh,
                                   float *restrict dc, float *restrict d) {
    if (dy)  /* this step's output's own gradient, beside what comes back from the next step */
        for (int j = 0; j < hidden; j++) dh[j] += dy[j];
    for (int j = 0; j < hidden; j++) {
        float i = a[j], f = a[hidden + j], g = a[2 * hidden + j], o = a[3 * hidden + j];
        float dh_t = dh[j];
        float tc = tanh_c[j];
        float dcell = dc[j] + dh_t * o * (1.0f - tc * tc);
        d[j] = dcell * g * i * (1.0f - i);
        d[hidden + j] = dcell * c_prev[j] * f * (1.0f - f);
        d[2 * hidden + j] = dcell * i * (1.0f - g * g);
        d[3 * hidden + j] = dh_t * tc * o * (1.0f - o);
        dc[j] = dcell * f;
    }
}

/* `w` [k, n] (member stride sw) as w_t [n, k] */
static void transpose(int k_len, int n, const float *restrict w, float *restrict w_t) {
    for (int k = 0; k < k_len; k++)
        for (int j = 0; j < n; j++) w_t[(long)j * k_len + k] = w[(long)k * n + j];
}

/* Backward through time. dy [members, steps, batch, H] is the loss's gradient for every output h_1..h_T, or
   NULL when only the last one has a gradient: dh_last, member e's row r and unit k at
   dh_last[e * sle + r * slr + k * slk] (NULL: none).
   x and dx: member e's [steps, batch, n_in] from x + e * sx and dx + e * sdx; dx is skipped when NULL (the
   layer's input needs no gradient). The weights' gradients are overwritten: member e's dw_ih [n_in, 4H],
   dw_hh [H, 4H] and db [4H] from dw_ih + e * sdw_ih and so on.
   Scratch: dgates like acts, dh and dc [members, batch, H], w_t [members, 4H, H + n_in]. */
void lstm_backward(int members, int steps, int batch, int n_in, int hidden, const float *x, long sx,
                   const float *w_ih, long sw_ih, const float *w_hh, long sw_hh, const float *hs, const float *cs,
                   const float *tcs, const float *acts, const float *dy, const float *dh_last, long sle, long slr,
                   long slk, float *dgates, float *dh, float *dc, float *w_t, float *dx, long sdx, float *dw_ih,
                   long sdw_ih, float *dw_hh, long sdw_hh, float *db, long sdb) {
    int g4 = 4 * hidden;
    long sh = (long)(steps + 1) * batch * hidden, sa = (long)steps * batch * g4;
    long rows = (long)steps * batch, state = (long)batch * hidden;
    for (int e = 0; e < members; e++) {
        const float *ae = acts + e * sa, *ce = cs + e * sh, *te = tcs + e * rows * hidden;
        const float *dye = dy ? dy + e * rows * hidden : NULL;
        float *de = dgates + e * sa, *dhe = dh + e * state, *dce = dc + e * state;
        float *wt_hh = w_t + (long)e * g4 * (hidden + n_in), *wt_ih = wt_hh + (long)g4 * hidden;
        transpose(hidden, g4, w_hh + e * sw_hh, wt_hh);
        transpose(n_in, g4, w_ih + e * sw_ih, wt_ih);
        for (long n = 0; n < state; n++) dce[n] = 0.0f;
        for (int r = 0; r < batch; r++)  /* what comes back into the last step from after it */
            for (int k = 0; k < hidden; k++)
                dhe[(long)r * hidden + k] = dh_last ? dh_last[e * sle + r * slr + k * slk] : 0.0f;
        for (int r0 = 0; r0 < batch; r0 += ROWS) {
            int block = batch - r0 < ROWS ? batch - r0 : ROWS;
            for (int t = steps - 1; t >= 0; t--) {
                long row = (long)t * batch + r0;
                for (int r = 0; r < block; r++)
                    lstm_cell_row_backward(hidden, ae + (row + r) * g4, ce + (row + r) * hidden,
                                           te + (row + r) * hidden, dye ? dye + (row + r) * hidden : NULL,
                                           dhe + (long)(r0 + r) * hidden, dce + (long)(r0 + r) * hidden,
                                           de + (row + r) * g4);
                if (dx)  /* dx_t = d_t W_ih^T */
                    block_times(block, g4, n_in, de + row * g4, g4, wt_ih, NULL, 0, dx + e * sdx + row * n_in, n_in);
                if (t > 0)  /* dh_{t-1} = d_t W_hh^T (h0 is a constant) */
                    block_times(block, g4, hidden, de + row * g4, g4, wt_hh, NULL, 0, dhe + (long)r0 * hidden, hidden);
            }
        }
        /* the weights' gradients over all steps at once: dW_hh = H_prev^T dG, dW_ih = X^T dG, db = sum of dG */
        outer_sum(hidden, rows, hs + e * sh, hidden, de, g4, g4, dw_hh + e * sdw_hh);
        outer_sum(n_in, rows, x + e * sx, n_in, de, g4, g4, dw_ih + e * sdw_ih);
        column_sums(rows, de, g4, g4, db + e * sdb);
    }
}

/* ------------------------------------------------------------------ an LSTM's block of steps
   An LSTM (its layers above, its dense head a Net with the inputs' gradient on) trained on a block of gathered
   rows: for each batch the layers forward, the head's step, the layers backward, and every member's update,
   in one call (models/native.py's NativeLSTMStep). With the bce loss (the head's net_step). With dropout the
   masks are those models/fused_lstm.py's forward draws, in its order: one per gap between layers
   ([batch, steps, H] per member), one on the last hidden state ([batch, H]), then the head's (net_step). */
typedef struct {
    const Net *head;
    int members, layers, steps, channels, hidden;       /* buffers below hold the most rows of a step */
    float *w_ih[MAX_LAYERS], *w_hh[MAX_LAYERS], *b[MAX_LAYERS];      /* member strides s_ih, s_hh, s_b */
    float *gw_ih[MAX_LAYERS], *gw_hh[MAX_LAYERS], *gb[MAX_LAYERS];   /* the gradients, the same strides */
    long s_ih[MAX_LAYERS], s_hh[MAX_LAYERS], s_b[MAX_LAYERS];
    float *sequence;                                     /* the layer 0 input, time-major [members, steps, batch, channels] */
    float *hs[MAX_LAYERS], *cs[MAX_LAYERS], *tcs[MAX_LAYERS], *acts[MAX_LAYERS];  /* each layer's, as above */
    float *dgates, *dh, *dc, *w_t, *dy, *dx;             /* scratch: the widest layer's; dy and dx [members, steps, batch, H] */
    float *head_dx;                                      /* the head's inputs' gradient [members, H, batch] */
    float *dropped[MAX_LAYERS];                          /* with dropout: layer k's masked outputs, time-major */
    float *last;                                         /* with dropout: the masked last hidden state [members, batch, H] */
} Lstm;

size_t lstm_size(void) { return sizeof(Lstm); }

int lstm_init(Lstm *net, const Net *head, int members, int layers, int steps, int channels, int hidden,
              float **w_ih, float **w_hh, float **b, float **gw_ih, float **gw_hh, float **gb, const long *strides,
              float *sequence, float **hs, float **cs, float **tcs, float **acts, float *dgates, float *dh, float *dc,
              float *w_t, float *dy, float *dx, float *head_dx, float **dropped, float *last) {
    if (layers < 1 || layers > MAX_LAYERS) return -1;
    net->head = head;
    net->members = members; net->layers = layers; net->steps = steps; net->channels = channels;
    net->hidden = hidden;
    for (int k = 0; k < layers; k++) {
        net->w_ih[k] = w_ih[k]; net->w_hh[k] = w_hh[k]; net->b[k] = b[k];
        net->gw_ih[k] = gw_ih[k]; net->gw_hh[k] = gw_hh[k]; net->gb[k] = gb[k];
        net->s_ih[k] = strides[3 * k]; net->s_hh[k] = strides[3 * k + 1]; net->s_b[k] = strides[3 * k + 2];
        net->hs[k] = hs[k]; net->cs[k] = cs[k]; net->tcs[k] = tcs[k]; net->acts[k] = acts[k];
    }
    net->sequence = sequence;
    net->dgates = dgates; net->dh = dh; net->dc = dc; net->w_t = w_t; net->dy = dy; net->dx = dx;
    net->head_dx = head_dx;
    for (int k = 0; k + 1 < layers; k++) net->dropped[k] = dropped[k];
    net->last = last;
    return 0;
}

/* A dropout mask's multiplier: member e's unit i of the window at `offset` (models/dropout.py's pool) */
static inline float kept(const unsigned char *keep, long keep_stride, const float *scale, int e, long offset, long i) {
    return keep[e * keep_stride + offset + i] ? scale[e] : 0.0f;
}

/* one step on `rows` rows: x as in net_step (member e's feature f of row r at x[e * xs_e + f * xs_f + r * xs_r],
   the features channel after channel, `steps` days each); logits to out, gradients into the parameters'.
   keep: NULL without dropout, else the pool (as net_step's) and offsets[] the step's windows in the order above. */
static void lstm_step(const Lstm *net, const float *x, long xs_e, long xs_f, long xs_r, const float *y, long ys,
                      int rows, float *out, long os, const unsigned char *keep, long keep_stride, const float *scale,
                      const long *offsets) {
    const int members = net->members, steps = net->steps, channels = net->channels, H = net->hidden;
    const int layers = net->layers;
    for (int e = 0; e < members; e++)  /* time-major, as the layers read it */
        for (int t = 0; t < steps; t++)
            for (int r = 0; r < rows; r++)
                for (int c = 0; c < channels; c++)
                    net->sequence[(((long)e * steps + t) * rows + r) * channels + c] =
                        x[e * xs_e + ((long)c * steps + t) * xs_f + r * xs_r];
    const long sh = (long)(steps + 1) * rows * H;  /* a layer's states: member stride, and where h_1 starts */
    const long seq = (long)steps * rows * H;       /* a masked sequence, dy and dx: member stride */
    /* layer k's input: the data, the last layer's outputs, or with dropout their masked copy */
    const float *input[MAX_LAYERS];
    long input_stride[MAX_LAYERS];
    for (int k = 0; k < layers; k++) {
        const int n_in = k == 0 ? channels : H;
        if (k == 0) {
            input[0] = net->sequence;
            input_stride[0] = (long)steps * rows * channels;
        } else if (keep) {  /* between layers k - 1 and k: the mask drawn as [batch, steps, H], read time-major */
            float *dropped = net->dropped[k - 1];
            const float *h = net->hs[k - 1] + (long)rows * H;
            for (int e = 0; e < members; e++)
                for (int t = 0; t < steps; t++)
                    for (int r = 0; r < rows; r++)
                        for (int j = 0; j < H; j++) {
                            const long at = e * seq + ((long)t * rows + r) * H + j;
                            dropped[at] = h[e * sh + ((long)t * rows + r) * H + j] *
                                          kept(keep, keep_stride, scale, e, offsets[k - 1], ((long)r * steps + t) * H + j);
                        }
            input[k] = dropped;
            input_stride[k] = seq;
        } else {
            input[k] = net->hs[k - 1] + (long)rows * H;
            input_stride[k] = sh;
        }
        lstm_forward(members, steps, rows, n_in, H, input[k], input_stride[k], net->w_ih[k], net->s_ih[k],
                     net->w_hh[k], net->s_hh[k], net->b[k], net->s_b[k], net->hs[k], net->cs[k], net->tcs[k],
                     net->acts[k]);
    }
    /* the head on the last layer's last hidden state (masked, with dropout) [members, H, rows] as net_step reads it */
    const float *last = net->hs[layers - 1] + (long)steps * rows * H;
    long last_stride = sh;
    const long last_offset = keep ? offsets[layers - 1] : 0;
    if (keep) {
        for (int e = 0; e < members; e++)
            for (long i = 0; i < (long)rows * H; i++)
                net->last[e * rows * H + i] = last[e * sh + i] * kept(keep, keep_stride, scale, e, last_offset, i);
        last = net->last;
        last_stride = (long)rows * H;
    }
    net_step(net->head, last, last_stride, 1, H, y, ys, rows, out, os, keep, keep_stride, scale,
             keep ? offsets + layers : NULL);
    if (keep)  /* back through the last hidden state's mask: head_dx [members, H, rows] */
        for (int e = 0; e < members; e++)
            for (int j = 0; j < H; j++)
                for (int r = 0; r < rows; r++)
                    net->head_dx[((long)e * H + j) * rows + r] *= kept(keep, keep_stride, scale, e, last_offset,
                                                                        (long)r * H + j);
    for (int k = layers - 1; k >= 0; k--) {
        const int n_in = k == 0 ? channels : H;
        const int top = k == layers - 1;
        /* dx of layer k is dy of layer k - 1: the two buffers swap roles each layer down */
        float *dy = (layers - 1 - k) % 2 ? net->dx : net->dy, *dx = (layers - 1 - k) % 2 ? net->dy : net->dx;
        if (!top && keep)  /* back through the mask between layers k and k + 1 */
            for (int e = 0; e < members; e++)
                for (int t = 0; t < steps; t++)
                    for (int r = 0; r < rows; r++)
                        for (int j = 0; j < H; j++)
                            dy[e * seq + ((long)t * rows + r) * H + j] *=
                                kept(keep, keep_stride, scale, e, offsets[k], ((long)r * steps + t) * H + j);
        lstm_backward(members, steps, rows, n_in, H, input[k], input_stride[k], net->w_ih[k], net->s_ih[k],
                      net->w_hh[k], net->s_hh[k], net->hs[k], net->cs[k], net->tcs[k], net->acts[k],
                      top ? NULL : dy, top ? net->head_dx : NULL, (long)H * rows, 1, rows, net->dgates, net->dh,
                      net->dc, net->w_t, k == 0 ? NULL : dx, seq, net->gw_ih[k], net->s_ih[k], net->gw_hh[k],
                      net->s_hh[k], net->gb[k], net->s_b[k]);
    }
}

/* lstm_step then optim_step for each batch of a block of gathered rows, as net_train_block does for an MLP
   (offsets: the windows of each step in turn, layers + the head's hidden layers per step; NULL without dropout) */
void lstm_train_block(const Lstm *net, const float *x, long xs_e, long xs_f, long xs_r, const float *y, long ys,
                      int width, int batch, float *out, long os, const unsigned char *keep, long keep_stride,
                      const float *scale, const long *offsets, int blocks, const long *block_width, float **p,
                      float **g, float **a, float **v, const Rule *rules, long first_step, const float *constants) {
    const int per_step = net->layers + net->head->layers - 1;
    for (int s = 0, start = 0; start < width; s++, start += batch) {
        const int rows = width - start < batch ? width - start : batch;
        lstm_step(net, x + start * xs_r, xs_e, xs_f, xs_r, y + start, ys, rows, out + start, os, keep, keep_stride,
                  scale, offsets != NULL ? offsets + (long)s * per_step : NULL);
        optim_step(net->members, blocks, block_width, p, g, a, v, rules, first_step + s, constants[0], constants[1],
                   constants[2], constants[3], constants[4], constants[5], constants[6]);
    }
}
