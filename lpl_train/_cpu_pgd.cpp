// The fused inner loop of Algorithm 1 on the CPU (lpl_train/perturbation_fused.py): the per-class
// algorithm of the Triton kernel (lpl_train/_triton_pgd.py) in C++, built on first use by
// lpl_train/_cpu_pgd.py with torch's own extension builder.
//
// Class c (its rows, every one carrying δ_c) runs its own K_c steps:
//   total = Σ_{y_i=c} w_i·softmax(u_i + δ_c)                 (w_i = 1 without weights)
//   δ_c  += α·s_c·(total/N_c − e_c)                          (or α·s_c·g/‖g‖, g = total/N_c − e_c)
//   δ_c  *= ε_c / max(‖δ_c‖, ε_c)                            (projection onto ‖δ_c‖ ≤ ε_c)
// and writes δ_c to its rows. A class is the work of one thread from start to end, so the result does not
// depend on the number of threads. The vector arithmetic is ATen's (at::vec::Vectorized); the softmax's
// exponential is its exp_u20: in float32 on AVX2 a polynomial within 20 ulp (a quarter faster than SLEEF's
// 1-ulp exp, the loop's largest cost; δ moved by under 1e-8 on the benchmark's batches), in float64 and in
// the portable build the exact exp. The file is compiled without contraction into fused multiply-adds.
#include <torch/extension.h>

#include <ATen/Parallel.h>
#include <ATen/cpu/vec/vec.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

namespace {

template <typename T>
using Vec = at::vec::Vectorized<T>;

template <typename T>
T lanes_max(const Vec<T>& v) {
  T buf[Vec<T>::size()];
  v.store(buf);
  T m = buf[0];
  for (int64_t k = 1; k < Vec<T>::size(); ++k) m = std::max(m, buf[k]);
  return m;
}

template <typename T>
T lanes_sum(const Vec<T>& v) {
  T buf[Vec<T>::size()];
  v.store(buf);
  T s = buf[0];
  for (int64_t k = 1; k < Vec<T>::size(); ++k) s += buf[k];
  return s;
}

// Σ_j x_j² over n values (lanes first, then the tail), in one fixed order.
template <typename T>
T squared_norm(const T* x, int64_t n) {
  constexpr int64_t V = Vec<T>::size();
  Vec<T> acc(T(0));
  int64_t j = 0;
  for (; j + V <= n; j += V) {
    Vec<T> v = Vec<T>::loadu(x + j);
    acc = acc + v * v;
  }
  T s = lanes_sum(acc);
  for (; j < n; ++j) s += x[j] * x[j];
  return s;
}

// total += coef · softmax(u + delta), with z a scratch row of n values.
template <typename T>
void add_softmax(const T* u, const T* delta, T* z, T* total, T coef, int64_t n) {
  constexpr int64_t V = Vec<T>::size();
  const T neg_inf = -std::numeric_limits<T>::infinity();
  Vec<T> vmax(neg_inf);
  int64_t j = 0;
  for (; j + V <= n; j += V) {
    Vec<T> v = Vec<T>::loadu(u + j) + Vec<T>::loadu(delta + j);
    v.store(z + j);
    vmax = at::vec::maximum(vmax, v);
  }
  T m = lanes_max(vmax);
  for (; j < n; ++j) {
    z[j] = u[j] + delta[j];
    m = std::max(m, z[j]);
  }
  const Vec<T> vm(m);
  Vec<T> vsum(T(0));
  j = 0;
  for (; j + V <= n; j += V) {
    Vec<T> e = (Vec<T>::loadu(z + j) - vm).exp_u20();
    e.store(z + j);
    vsum = vsum + e;
  }
  T s = lanes_sum(vsum);
  if (j < n) {  // the tail through the same vector exponential, so that every column rounds alike
    Vec<T> e = (Vec<T>::loadu(z + j, n - j) - vm).exp_u20();
    e.store(z + j, n - j);
    for (; j < n; ++j) s += z[j];
  }
  const Vec<T> vs(s), vc(coef);
  j = 0;
  for (; j + V <= n; j += V) {
    Vec<T> p = Vec<T>::loadu(z + j) / vs;
    (Vec<T>::loadu(total + j) + p * vc).store(total + j);
  }
  for (; j < n; ++j) total[j] += (z[j] / s) * coef;
}

template <typename T>
void class_loop(
    int64_t c,
    const T* logits,
    int64_t stride,
    int64_t n_cls,
    const int64_t* rows,
    int64_t n_c,
    int64_t k_c,
    T scale,
    T radius,
    const T* weight,
    bool normalize,
    T tiny,
    T* delta,
    T* total,
    T* z,
    T* out) {
  constexpr int64_t V = Vec<T>::size();
  T size;
  if (weight != nullptr) {  // the class mass Σ_{y_i=c} w_i (1 for a mass of 0, as the torch loop takes it)
    T mass = T(0);
    for (int64_t r = 0; r < n_c; ++r) mass += weight[rows[r]];
    size = mass > T(0) ? mass : T(1);
  } else {
    size = static_cast<T>(n_c);
  }
  const T mean_scale = scale / size;  // α·s_c / N_c
  std::fill(delta, delta + n_cls, T(0));
  for (int64_t k = 0; k < k_c; ++k) {
    std::fill(total, total + n_cls, T(0));
    for (int64_t r = 0; r < n_c; ++r) {
      const int64_t i = rows[r];
      add_softmax(logits + i * stride, delta, z, total, weight != nullptr ? weight[i] : T(1), n_cls);
    }
    if (normalize) {  // δ_c += α·s_c·g/‖g‖, g = class mean of the probabilities − e_c
      const Vec<T> vsize(size);
      int64_t j = 0;
      for (; j + V <= n_cls; j += V) (Vec<T>::loadu(total + j) / vsize).store(z + j);
      for (; j < n_cls; ++j) z[j] = total[j] / size;
      z[c] -= T(1);
      const T g_norm = std::sqrt(squared_norm(z, n_cls));
      const T div = std::max(g_norm, tiny);
      const Vec<T> vdiv(div), vscale(scale);
      j = 0;
      for (; j + V <= n_cls; j += V) {
        Vec<T> step = vscale * (Vec<T>::loadu(z + j) / vdiv);
        (Vec<T>::loadu(delta + j) + step).store(delta + j);
      }
      for (; j < n_cls; ++j) delta[j] += scale * (z[j] / div);
    } else {  // δ_c += α·s_c·(class mean of the probabilities − e_c)
      delta[c] -= scale;
      const Vec<T> vms(mean_scale);
      int64_t j = 0;
      for (; j + V <= n_cls; j += V)
        (Vec<T>::loadu(delta + j) + vms * Vec<T>::loadu(total + j)).store(delta + j);
      for (; j < n_cls; ++j) delta[j] += mean_scale * total[j];
    }
    const T d_norm = std::sqrt(squared_norm(delta, n_cls));
    const T factor = radius / std::max(d_norm, radius);
    const Vec<T> vf(factor);
    int64_t j = 0;
    for (; j + V <= n_cls; j += V) (Vec<T>::loadu(delta + j) * vf).store(delta + j);
    for (; j < n_cls; ++j) delta[j] *= factor;
  }
  for (int64_t r = 0; r < n_c; ++r) std::copy(delta, delta + n_cls, out + rows[r] * n_cls);
}

}  // namespace

// δ per row (N, C), zeros on the rows of no class: the inner loop of Algorithm 1 for every class at once.
//   logits (N, C) float32/float64, rows contiguous (stride(1) == 1)
//   key (N,) int64: the class of each row, C for a row that belongs to no class (not kept)
//   steps (C,) int64: K_c = clamp(steps[c], 0, max_steps)
//   scale (C,) α·s_c and bounds (C,) ε_c, in the logits' dtype
//   weight: (N,) row masses in the logits' dtype, or an empty tensor for none
at::Tensor pgd_class_loop(
    const at::Tensor& logits,
    const at::Tensor& key,
    const at::Tensor& steps,
    const at::Tensor& scale,
    const at::Tensor& bounds,
    const at::Tensor& weight,
    int64_t max_steps,
    double tiny,
    bool normalize) {
  TORCH_CHECK(logits.device().is_cpu(), "pgd_class_loop: the logits must be on the CPU");
  TORCH_CHECK(logits.dim() == 2, "pgd_class_loop: logits (N, C) expected, got ", logits.sizes());
  TORCH_CHECK(
      logits.scalar_type() == at::kFloat || logits.scalar_type() == at::kDouble,
      "pgd_class_loop: float32 or float64 logits expected, got ", logits.scalar_type());
  TORCH_CHECK(
      logits.size(1) <= 1 || logits.stride(1) == 1, "pgd_class_loop: the logits' columns must be contiguous");
  const int64_t n = logits.size(0), n_cls = logits.size(1);
  auto is_vec = [](const at::Tensor& t, at::ScalarType type, int64_t len) {
    return t.device().is_cpu() && t.dim() == 1 && t.size(0) == len && t.scalar_type() == type &&
        t.is_contiguous();
  };
  TORCH_CHECK(is_vec(key, at::kLong, n), "pgd_class_loop: key must be (N,) int64, contiguous");
  TORCH_CHECK(is_vec(steps, at::kLong, n_cls), "pgd_class_loop: steps must be (C,) int64, contiguous");
  for (const at::Tensor* t : {&scale, &bounds})
    TORCH_CHECK(
        is_vec(*t, logits.scalar_type(), n_cls),
        "pgd_class_loop: scale and bounds must be (C,) in the logits' dtype, contiguous");
  const bool weighted = weight.numel() > 0;
  TORCH_CHECK(
      !weighted || is_vec(weight, logits.scalar_type(), n),
      "pgd_class_loop: weight must be empty or (N,) in the logits' dtype, contiguous");
  // the rows grouped by class (a stable counting sort: batch order within a class)
  const int64_t* key_p = key.data_ptr<int64_t>();
  std::vector<int64_t> first(n_cls + 2, 0), order(n);
  for (int64_t i = 0; i < n; ++i) {
    TORCH_CHECK(key_p[i] >= 0 && key_p[i] <= n_cls, "pgd_class_loop: key holds ", key_p[i], " outside [0, C]");
    ++first[key_p[i] + 1];
  }
  for (int64_t c = 0; c <= n_cls; ++c) first[c + 1] += first[c];
  {
    std::vector<int64_t> next(first.begin(), first.end() - 1);
    for (int64_t i = 0; i < n; ++i) order[next[key_p[i]]++] = i;
  }

  at::Tensor out = at::zeros({n, n_cls}, logits.options());
  if (n == 0 || n_cls == 0 || max_steps <= 0) return out;
  const int64_t* steps_p = steps.data_ptr<int64_t>();
  const int64_t* first_p = first.data();
  const int64_t* order_p = order.data();
  const int64_t stride = logits.stride(0);
  // a chunk of classes is at least ~32k multiply-adds of work (a class costs ~N_c·C per step)
  const int64_t per_class = std::max<int64_t>(1, n * max_steps);
  const int64_t grain = std::max<int64_t>(1, at::internal::GRAIN_SIZE / per_class);
  AT_DISPATCH_FLOATING_TYPES(logits.scalar_type(), "pgd_class_loop", [&] {
    const scalar_t* u = logits.data_ptr<scalar_t>();
    const scalar_t* scale_p = scale.data_ptr<scalar_t>();
    const scalar_t* bounds_p = bounds.data_ptr<scalar_t>();
    const scalar_t* w = weighted ? weight.data_ptr<scalar_t>() : nullptr;
    scalar_t* out_p = out.data_ptr<scalar_t>();
    const scalar_t tiny_t = static_cast<scalar_t>(tiny);
    at::parallel_for(0, n_cls, grain, [&](int64_t begin, int64_t end) {
      std::vector<scalar_t> buf(3 * n_cls);
      for (int64_t c = begin; c < end; ++c) {
        const int64_t n_c = first_p[c + 1] - first_p[c];
        if (n_c == 0) continue;  // no row carries δ_c
        const int64_t k_c = std::min(std::max<int64_t>(steps_p[c], 0), max_steps);
        class_loop<scalar_t>(
            c, u, stride, n_cls, order_p + first_p[c], n_c, k_c, scale_p[c],
            std::max(bounds_p[c], tiny_t), w, normalize, tiny_t,
            buf.data(), buf.data() + n_cls, buf.data() + 2 * n_cls, out_p);
      }
    });
  });
  return out;
}
