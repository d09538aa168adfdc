// fastmlp._core: the only file that sees Python. Argument checks, array conversion and
// GIL release live here; the math lives in kernels/.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdlib>
#include <string>

#include "kernels/cpu.h"

namespace py = pybind11;
using namespace fastmlp;

#ifndef FASTMLP_VERSION
#define FASTMLP_VERSION "dev"
#endif

namespace {

Isa isa_from_name(const std::string& name, const char* arg) {
  Isa isa;
  if (!parse_isa(name.c_str(), &isa))
    throw py::value_error(std::string(arg) + ": expected one of 'generic', 'avx2', 'avx512', got '" +
                          name + "'");
  return isa;
}

py::dict build_info() {
  py::dict info;
  info["version"] = FASTMLP_VERSION;
  info["isa"] = isa_name(active_isa());
  info["cpu_isa"] = isa_name(detected_isa());
#ifdef FASTMLP_X86
  info["compiled_isas"] = py::make_tuple("generic", "avx2", "avx512");
#else
  info["compiled_isas"] = py::make_tuple("generic");
#endif
  info["num_threads"] = num_threads();
  return info;
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "fastmlp's C++ kernels; use them through fastmlp.get_backend('native').";
  if (const char* env = std::getenv("FASTMLP_ISA"); env != nullptr && *env != '\0')
    set_isa_cap(isa_from_name(env, "FASTMLP_ISA"));
  m.attr("__version__") = FASTMLP_VERSION;
  m.def("build_info", &build_info, "Version, active ISA, CPU ISA, compiled ISAs, threads.");
  m.def("set_isa", [](const std::string& name) { return isa_name(set_isa_cap(isa_from_name(name, "name"))); },
        py::arg("name"), "Cap the kernels' ISA; returns the ISA now active.");
  m.def("set_num_threads", &set_num_threads, py::arg("n"));
  m.def("get_num_threads", &num_threads);
}
