// The kernels against naive loops, without Python: built by CMake with
// -DFASTMLP_PYTHON=OFF -DFASTMLP_KERNEL_CHECK=ON, so it runs where the Python module cannot
// be built or run, such as an aarch64 cross-build under qemu-user (tools/check_aarch64.sh).
// Exits 1 and names each mismatch; prints the ISA it ran on.
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "kernels/activation.h"
#include "kernels/cpu.h"
#include "kernels/gemm.h"
#include "kernels/loss.h"
#include "kernels/update.h"

namespace {

using fastmlp::Act;

int checks = 0, failures = 0;

// |got - want| <= tol * scale, where scale bounds the magnitude of the terms summed
void expect_close(const std::string& what, double got, double want, double tol, double scale = 1.0) {
  ++checks;
  if (!(std::fabs(got - want) <= tol * scale)) {
    if (++failures <= 20) std::printf("FAIL %s: got %.17g, want %.17g\n", what.c_str(), got, want);
  }
}

template <class T>
std::vector<T> random_vector(std::size_t n, std::mt19937& rng) {
  std::normal_distribution<double> normal;
  std::vector<T> v(n);
  for (T& x : v) x = static_cast<T>(normal(rng));
  return v;
}

template <class T>
double tolerance() {
  return sizeof(T) == 4 ? 1e-5 : 1e-13;
}

template <class T>
const char* type_name() {
  return sizeof(T) == 4 ? "float32" : "float64";
}

double act_naive(double z, Act act, double param) {
  switch (act) {
    case Act::sigmoid: return 1.0 / (1.0 + std::exp(-z));
    case Act::tanh: return std::tanh(z);
    case Act::relu: return z > 0 ? z : 0.0;
    case Act::leaky_relu: return z > 0 ? z : param * z;
    case Act::elu: return z > 0 ? z : param * std::expm1(z);
    case Act::identity: return z;
  }
  return 0.0;
}

// C = A B with A (m,k) row-major or, when a_transposed, stored as Aᵀ (k,m) row-major
template <class T>
void check_gemm(std::size_t m, std::size_t n, std::size_t k, bool a_transposed, std::mt19937& rng) {
  const auto a = random_vector<T>(m * k, rng), b = random_vector<T>(k * n, rng);
  std::vector<T> c(m * n);
  const std::ptrdiff_t rs_a = a_transposed ? 1 : static_cast<std::ptrdiff_t>(k);
  const std::ptrdiff_t cs_a = a_transposed ? static_cast<std::ptrdiff_t>(m) : 1;
  fastmlp::gemm<T>(c.data(), n, a.data(), rs_a, cs_a, b.data(), n, 1, m, n, k, false);
  const std::string what = std::string("gemm ") + type_name<T>() + " " + std::to_string(m) + "x" +
                           std::to_string(n) + "x" + std::to_string(k) + (a_transposed ? " Aᵀ" : "");
  for (std::size_t i = 0; i < m; ++i)
    for (std::size_t j = 0; j < n; ++j) {
      double want = 0.0, scale = 0.0;
      for (std::size_t p = 0; p < k; ++p) {
        const double term = double(a[i * rs_a + p * cs_a]) * double(b[p * n + j]);
        want += term;
        scale += std::fabs(term);
      }
      expect_close(what, c[i * n + j], want, tolerance<T>(), scale + 1.0);
    }
}

// Z = X Wᵀ + bias, A = f(Z)
template <class T>
void check_linear_forward(std::size_t n, std::size_t k, std::size_t m, Act act, double param,
                          std::mt19937& rng) {
  const auto x = random_vector<T>(n * k, rng), w = random_vector<T>(m * k, rng),
             bias = random_vector<T>(m, rng);
  std::vector<T> z(n * m), a(n * m);
  fastmlp::linear_forward<T>(z.data(), a.data(), x.data(), k, 1, w.data(), k, 1, bias.data(), 1, n,
                             k, m, act, static_cast<T>(param));
  const std::string what = std::string("linear_forward ") + type_name<T>() + " act " +
                           std::to_string(static_cast<int>(act)) + " n=" + std::to_string(n);
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t j = 0; j < m; ++j) {
      double zz = double(bias[j]), scale = std::fabs(double(bias[j]));
      for (std::size_t p = 0; p < k; ++p) {
        zz += double(x[i * k + p]) * double(w[j * k + p]);
        scale += std::fabs(double(x[i * k + p]) * double(w[j * k + p]));
      }
      expect_close(what + " z", z[i * m + j], zz, tolerance<T>(), scale + 1.0);
      // f is at most 1-Lipschitz (param <= 1 here), so a's error is bounded by z's
      expect_close(what + " a", a[i * m + j], act_naive(double(z[i * m + j]), act, param),
                   tolerance<T>(), std::fabs(double(z[i * m + j])) + 1.0);
    }
}

template <class T>
void check_elementwise(std::mt19937& rng) {
  const std::size_t n = 1000;  // long enough for every vector loop and its remainder
  auto z = random_vector<T>(n, rng);
  for (T& v : z) v *= T(4);
  z[0] = T(0);
  z[1] = T(30);
  z[2] = T(-30);
  for (Act act : {Act::sigmoid, Act::tanh, Act::relu, Act::leaky_relu, Act::elu, Act::identity}) {
    const double param = act == Act::leaky_relu ? 0.1 : 0.7;
    std::vector<T> a(n);
    fastmlp::activation_forward<T>(a.data(), z.data(), n, act, static_cast<T>(param));
    const std::string what = std::string("activation_forward ") + type_name<T>() + " act " +
                             std::to_string(static_cast<int>(act));
    for (std::size_t i = 0; i < n; ++i)
      expect_close(what, a[i], act_naive(double(z[i]), act, static_cast<T>(param)), 4 * tolerance<T>(),
                   std::fabs(act_naive(double(z[i]), act, param)) + 1e-3);
  }
  // softmax over rows of 7
  const std::size_t rows = n / 7, k = 7;
  std::vector<T> p(rows * k);
  fastmlp::softmax<T>(p.data(), z.data(), rows, k);
  for (std::size_t i = 0; i < rows; ++i) {
    double peak = -1e300, sum = 0.0;
    for (std::size_t j = 0; j < k; ++j) peak = std::fmax(peak, double(z[i * k + j]));
    for (std::size_t j = 0; j < k; ++j) sum += std::exp(double(z[i * k + j]) - peak);
    for (std::size_t j = 0; j < k; ++j)
      expect_close(std::string("softmax ") + type_name<T>(), p[i * k + j],
                   std::exp(double(z[i * k + j]) - peak) / sum, 4 * tolerance<T>());
  }
  // maxout over groups of 3
  const std::size_t m = n / 3 / 10, groups = 3;
  std::vector<T> out(10 * m);
  std::vector<std::int64_t> argmax(10 * m);
  fastmlp::maxout_forward<T>(out.data(), argmax.data(), z.data(), 10, m, groups);
  for (std::size_t i = 0; i < 10; ++i)
    for (std::size_t j = 0; j < m; ++j) {
      std::size_t best = 0;
      for (std::size_t q = 1; q < groups; ++q)
        if (z[i * m * groups + j * groups + q] > z[i * m * groups + j * groups + best]) best = q;
      expect_close(std::string("maxout ") + type_name<T>(), out[i * m + j],
                   z[i * m * groups + j * groups + best], 0.0);
      expect_close(std::string("maxout argmax ") + type_name<T>(), double(argmax[i * m + j]),
                   double(best), 0.0);
    }
  // SGD with weight decay
  auto w = random_vector<T>(n, rng);
  const auto dw = random_vector<T>(n, rng), w0 = w;
  fastmlp::sgd_update<T>(w.data(), dw.data(), n, T(0.1), T(0.01));
  for (std::size_t i = 0; i < n; ++i)
    expect_close(std::string("sgd_update ") + type_name<T>(), w[i],
                 double(w0[i]) - 0.1 * (double(dw[i]) + 0.01 * double(w0[i])), 2 * tolerance<T>(),
                 std::fabs(double(w0[i])) + 1.0);
}

// The same product on 1 and 2 threads, bitwise (gemm.h: work is never split along k)
template <class T>
void check_thread_count_invariance(std::mt19937& rng) {
  const std::size_t m = 200, n = 150, k = 333;
  const auto a = random_vector<T>(m * k, rng), b = random_vector<T>(k * n, rng);
  std::vector<T> c1(m * n), c2(m * n);
  fastmlp::set_num_threads(1);
  fastmlp::gemm<T>(c1.data(), n, a.data(), k, 1, b.data(), n, 1, m, n, k, false);
  fastmlp::set_num_threads(2);
  fastmlp::gemm<T>(c2.data(), n, a.data(), k, 1, b.data(), n, 1, m, n, k, false);
  for (std::size_t i = 0; i < m * n; ++i)
    expect_close(std::string("gemm 1 vs 2 threads ") + type_name<T>(), c1[i], c2[i], 0.0);
}

template <class T>
void check_all(std::mt19937& rng) {
  for (auto [m, n, k] : {std::array<std::size_t, 3>{1, 1, 1}, {7, 5, 3}, {33, 17, 65},
                         {64, 100, 300}, {130, 9, 513}})
    for (bool transposed : {false, true}) check_gemm<T>(m, n, k, transposed, rng);
  for (Act act : {Act::sigmoid, Act::tanh, Act::relu, Act::leaky_relu, Act::elu, Act::identity})
    for (std::size_t n : {1, 10, 64}) check_linear_forward<T>(n, 37, 29, act, 0.3, rng);
  check_elementwise<T>(rng);
  check_thread_count_invariance<T>(rng);
}

}  // namespace

int main() {
  std::mt19937 rng(0);
  check_all<float>(rng);
  check_all<double>(rng);
  std::printf("kernel_check (%s kernels): %d checks, %d failures\n",
              fastmlp::isa_name(fastmlp::active_isa()), checks, failures);
  return failures == 0 ? 0 : 1;
}
