/* al-loop's student pair style: see pair_alloop_student.h. */

#include "pair_alloop_student.h"

#include "atom.h"
#include "comm.h"
#include "error.h"
#include "force.h"
#include "memory.h"
#include "neigh_list.h"
#include "neighbor.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>

#if defined(_OPENMP)
#include <omp.h>
#endif

using namespace LAMMPS_NS;

PairAlloopStudent::PairAlloopStudent(LAMMPS *lmp, bool threaded) : Pair(lmp), threaded(threaded)
{
  single_enable = 0;
  restartinfo = 0;
  one_coeff = 1;
  manybody_flag = 1;
  centroidstressflag = CENTROID_NOTAVAIL;
}

PairAlloopStudent::~PairAlloopStudent()
{
  if (allocated) {
    memory->destroy(setflag);
    memory->destroy(cutsq);
  }
}

void PairAlloopStudent::allocate()
{
  allocated = 1;
  int n = atom->ntypes;
  memory->create(setflag, n + 1, n + 1, "pair:setflag");
  memory->create(cutsq, n + 1, n + 1, "pair:cutsq");
  for (int i = 1; i <= n; i++)
    for (int j = i; j <= n; j++) setflag[i][j] = 0;
}

void PairAlloopStudent::settings(int narg, char ** /*arg*/)
{
  if (narg != 0) error->all(FLERR, "pair_style alloop/student takes no arguments");
}

/* One file per run: pair_coeff * * FILE El1 El2 ... (one element per atom type). */
void PairAlloopStudent::coeff(int narg, char **arg)
{
  if (!allocated) allocate();
  int ntypes = atom->ntypes;
  if (narg != 3 + ntypes)
    error->all(FLERR,
               "pair_coeff for alloop/student: expected * * FILE and {} element names (one per "
               "atom type), got {} arguments",
               ntypes, narg);
  if (std::string(arg[0]) != "*" || std::string(arg[1]) != "*")
    error->all(FLERR, "pair_coeff for alloop/student must be 'pair_coeff * * FILE El1 El2 ...'");
  read_file(arg[2]);
  type_element.assign(ntypes + 1, -1);
  for (int t = 1; t <= ntypes; t++) {
    std::string symbol = arg[2 + t];
    for (std::size_t a = 0; a < elements.size(); a++)
      if (elements[a] == symbol) type_element[t] = (int) a;
    if (type_element[t] < 0) {
      std::string known;
      for (auto &e : elements) known += " " + e;
      error->all(FLERR, "alloop/student: {} has no element {} (atom type {}); it knows:{}",
                 arg[2], symbol, t, known);
    }
  }
  for (int i = 1; i <= ntypes; i++)
    for (int j = i; j <= ntypes; j++) setflag[i][j] = 1;
}

void PairAlloopStudent::init_style()
{
  if (force->newton_pair == 0) error->all(FLERR, "pair_style alloop/student requires newton pair on");
  neighbor->add_request(this, NeighConst::REQ_FULL);
}

double PairAlloopStudent::init_one(int /*i*/, int /*j*/)
{
  if (cutoff <= 0.0) error->all(FLERR, "alloop/student: pair_coeff has not been given");
  return cutoff;
}

/* ---------------------------------------------------------------------- reading the file */

namespace {
struct Reader {
  std::vector<std::string> tokens;
  std::size_t at = 0;
  std::string path;
  Error *error;

  [[noreturn]] void fail(const std::string &what)
  {
    error->all(FLERR, "alloop/student: {}: {} (token {}); write it again with al-loop distil", path,
               what, at);
    throw 0;    // not reached
  }
  std::string word(const char *expected = nullptr)
  {
    if (at >= tokens.size()) fail(std::string("ends early, expected ") + (expected ? expected : "more"));
    std::string token = tokens[at++];
    if (expected && token != expected) fail(std::string("expected '") + expected + "', found '" + token + "'");
    return token;
  }
  long integer()
  {
    std::string token = word();
    char *end = nullptr;
    long value = std::strtol(token.c_str(), &end, 10);
    if (end == token.c_str() || *end != '\0') fail("expected an integer, found '" + token + "'");
    return value;
  }
  double number()
  {
    std::string token = word();
    char *end = nullptr;
    double value = std::strtod(token.c_str(), &end);
    if (end == token.c_str() || *end != '\0') fail("expected a number, found '" + token + "'");
    return value;
  }
  void numbers(std::vector<double> &out, std::size_t count)
  {
    out.resize(count);
    for (std::size_t k = 0; k < count; k++) out[k] = number();
  }
};
}    // namespace

void PairAlloopStudent::read_file(const std::string &path)
{
  std::ifstream in(path);
  if (!in) error->all(FLERR, "alloop/student: cannot open model file {}", path);
  Reader r;
  r.path = path;
  r.error = error;
  std::string line;
  while (std::getline(in, line)) {
    auto hash = line.find('#');
    if (hash != std::string::npos) line.erase(hash);
    std::istringstream words(line);
    std::string token;
    while (words >> token) r.tokens.push_back(token);
  }
  r.word("alloop-student");
  if (r.integer() != 2) r.fail("format version is not 2 (this plugin reads 2)");
  r.word("elements");
  long n_el = r.integer();
  if (n_el < 1 || n_el > 128) r.fail("impossible number of elements");
  elements.clear();
  for (long a = 0; a < n_el; a++) elements.push_back(r.word());
  r.word("descriptor");
  cutoff = r.number();
  n_basis = (int) r.integer();
  n_channels = (int) r.integer();
  lmax = (int) r.integer();
  decay = (int) r.integer();
  const long declared_features = r.integer();
  if (cutoff <= 0.0 || n_basis < 1 || n_channels < 1 || lmax < 0 || lmax > 8 || decay < 0 ||
      decay > 12)
    r.fail("impossible descriptor shape");
  r.word("network");
  if (r.word() != "tanh") r.fail("activation is not tanh");
  long n_hidden = r.integer();
  std::vector<long> widths;
  for (long h = 0; h < n_hidden; h++) widths.push_back(r.integer());

  mono_p.clear(); mono_q.clear(); mono_s.clear(); mono_l.clear(); mono_w.clear();
  auto fact = [](int n) { double f = 1.0; for (int k = 2; k <= n; k++) f *= k; return f; };
  for (int l = 0; l <= lmax; l++)
    for (int p = l; p >= 0; p--)
      for (int q = l - p; q >= 0; q--) {
        int s = l - p - q;
        mono_p.push_back(p); mono_q.push_back(q); mono_s.push_back(s); mono_l.push_back(l);
        mono_w.push_back(fact(l) / (fact(p) * fact(q) * fact(s)));
      }
  n_mono = (int) mono_p.size();
  n_features = n_channels + (lmax + 1) * n_channels * (n_channels + 1) / 2;
  if (declared_features != n_features)
    r.fail(fmt::format("the descriptor declares {} features; its shape (channels {}, lmax {}) "
                       "gives {}", declared_features, n_channels, lmax, n_features));

  r.word("mixing");
  r.numbers(mixing, (std::size_t) n_el * n_el * n_channels * n_basis);
  nets.assign(n_el, StudentElement());
  for (long a = 0; a < n_el; a++) {
    StudentElement &net = nets[a];
    r.word("element");
    net.symbol = r.word(elements[a].c_str());
    net.e0 = r.number();
    r.word("shift");
    r.numbers(net.shift, n_features);
    r.word("scale");
    r.numbers(net.scale, n_features);
    long n_in = n_features;
    for (long h = 0; h <= n_hidden; h++) {
      long n_out = h < n_hidden ? widths[h] : 1;
      r.word("layer");
      long got_in = r.integer(), got_out = r.integer();
      if (got_in != n_in || got_out != n_out)
        r.fail(fmt::format("layer {} of {} is {}x{}; the descriptor and network declare {}x{}", h,
                           elements[a], got_in, got_out, n_in, n_out));
      StudentLayer layer;
      layer.n_in = (int) n_in;
      layer.n_out = (int) n_out;
      r.numbers(layer.weight, (std::size_t) n_in * n_out);
      r.numbers(layer.bias, n_out);
      net.layers.push_back(layer);
      n_in = n_out;
    }
  }
  r.word("end");
  if (r.at != r.tokens.size()) r.fail("has tokens after 'end'");
  scratch.clear();    // sized for this model at the next compute
}

void PairAlloopStudent::size_scratch(StudentScratch &s, int pairs) const
{
  if (s.moments.empty()) {
    std::size_t widest = n_features;
    for (const StudentLayer &layer : nets[0].layers)
      widest = std::max<std::size_t>(widest, layer.n_out);
    s.moments.assign((std::size_t) n_channels * n_mono, 0.0);
    s.grad_moments.assign(s.moments.size(), 0.0);
    s.feats.assign(n_features, 0.0);
    s.grad_feats.assign(n_features, 0.0);
    s.work.assign((nets[0].layers.size() + 1) * widest * 2, 0.0);
    s.mono.assign(n_mono, 0.0);
    s.amono.assign(n_mono, 0.0);
    s.bmono.assign(n_mono, 0.0);
    s.T.assign(n_basis, 0.0);
    s.dT.assign(n_basis, 0.0);
    s.pw.assign(3 * (lmax + 1), 0.0);
  }
  if (pairs > s.max_pairs) {
    s.max_pairs = pairs;
    s.pr.resize(4 * (std::size_t) pairs);
    s.pu.resize(3 * (std::size_t) pairs);
    s.pradial.resize((std::size_t) n_channels * pairs);
    s.pdradial.resize((std::size_t) n_channels * pairs);
    s.pj.resize(pairs);
  }
}

/* ---------------------------------------------------------------------- the computation */

/* The hot functions are built twice on x86-64 by GCC 11 or later (the first to name x86-64-v3):
   for AVX2 with FMA and for the baseline; the loader picks the one the CPU runs (a plugin built
   on a login node still runs on older compute nodes, where -march=native would die with an
   illegal instruction). Other compilers build the baseline only. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 11 && \
    !defined(ALLOOP_NO_CLONES)
#define ALLOOP_HOT __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define ALLOOP_HOT
#endif

namespace {
/* tanh through one exp: glibc's tanh (via expm1) took 14 % of a step. The absolute error is
   ~1e-16; near 0 the relative error grows as 1e-16/|x|, far below the 1e-6 the tests ask of
   LAMMPS against PyTorch. */
inline double fast_tanh(double x)
{
  const double e = std::exp(-2.0 * std::fabs(x));
  return std::copysign((1.0 - e) / (1.0 + e), x);
}
}    // namespace

/* E_i from the moments (already in s.moments); writes dE_i/dM into s.grad_moments. */
ALLOOP_HOT double PairAlloopStudent::atom_energy(int element, StudentScratch &s) const
{
  const int C = n_channels, NM = n_mono;
  const double *M = s.moments.data();
  double *grad_m = s.grad_moments.data();
  double *g = s.feats.data();
  int f = 0;
  for (int c = 0; c < C; c++) g[f++] = M[c * NM];
  for (int l = 0; l <= lmax; l++) {
    int first = l * (l + 1) * (l + 2) / 6, count = (l + 1) * (l + 2) / 2;
    for (int c = 0; c < C; c++)
      for (int d = c; d < C; d++) {
        double sum = 0.0;
#pragma omp simd reduction(+ : sum)
        for (int m = first; m < first + count; m++) sum += mono_w[m] * M[c * NM + m] * M[d * NM + m];
        g[f++] = sum;
      }
  }
  const StudentElement &net = nets[element];
  const int n_layers = (int) net.layers.size();
  // activations: h[0] = normalised features, h[k] = tanh(...) for hidden k
  std::size_t stride = s.work.size() / (2 * (n_layers + 1));
  double *h = s.work.data();
  for (int k = 0; k < n_features; k++) h[k] = (g[k] - net.shift[k]) / net.scale[k];
  double energy = net.e0;
  for (int L = 0; L < n_layers; L++) {
    const StudentLayer &layer = net.layers[L];
    const double *in = h + L * stride;
    double *out = h + (L + 1) * stride;
    for (int o = 0; o < layer.n_out; o++) {
      const double *w = layer.weight.data() + (std::size_t) o * layer.n_in;
      double z = layer.bias[o];
#pragma omp simd reduction(+ : z)
      for (int k = 0; k < layer.n_in; k++) z += w[k] * in[k];
      out[o] = (L + 1 < n_layers) ? fast_tanh(z) : z;
    }
  }
  energy += h[n_layers * stride];
  // backward: dE/dh, layer by layer
  double *dh = s.work.data() + (n_layers + 1) * stride;
  double *dnext = dh + n_layers * stride;
  dnext[0] = 1.0;
  for (int L = n_layers - 1; L >= 0; L--) {
    const StudentLayer &layer = net.layers[L];
    double *dout = dh + (L + 1) * stride;
    const double *out = h + (L + 1) * stride;
    if (L + 1 < n_layers)
      for (int o = 0; o < layer.n_out; o++) dout[o] *= 1.0 - out[o] * out[o];
    double *din = dh + L * stride;
    for (int k = 0; k < layer.n_in; k++) din[k] = 0.0;
    for (int o = 0; o < layer.n_out; o++) {
      const double *w = layer.weight.data() + (std::size_t) o * layer.n_in;
      const double d = dout[o];
      for (int k = 0; k < layer.n_in; k++) din[k] += w[k] * d;
    }
  }
  double *dg = s.grad_feats.data();
  for (int k = 0; k < n_features; k++) dg[k] = dh[k] / net.scale[k];
  // dE/dM
  for (int k = 0; k < C * NM; k++) grad_m[k] = 0.0;
  f = 0;
  for (int c = 0; c < C; c++) grad_m[c * NM] += dg[f++];
  for (int l = 0; l <= lmax; l++) {
    int first = l * (l + 1) * (l + 2) / 6, count = (l + 1) * (l + 2) / 2;
    for (int c = 0; c < C; c++)
      for (int d = c; d < C; d++) {
        const double w = dg[f++];
        for (int m = first; m < first + count; m++) {
          grad_m[c * NM + m] += w * mono_w[m] * M[d * NM + m];
          grad_m[d * NM + m] += w * mono_w[m] * M[c * NM + m];
        }
      }
  }
  return energy;
}

void PairAlloopStudent::compute(int eflag, int vflag)
{
  ev_init(eflag, vflag);
  const int inum = list->inum;
  // ev_tally_xyz (a pairwise or per-atom virial) writes shared sums: one thread then
  int nthreads = threaded ? std::max(1, comm->nthreads) : 1;
  if (vflag_either) nthreads = 1;
#if !defined(_OPENMP)
  nthreads = 1;    // built without OpenMP: the shares below would run one after another
#endif
  nthreads = std::min(nthreads, std::max(1, inum));
  if ((int) scratch.size() < nthreads) scratch.resize(nthreads);
  double **f = atom->f;
  if (nthreads == 1) {
    const double energy = accumulate(0, inum, f, eflag, scratch[0]);
    if (eflag_global) eng_vdwl += energy;
  } else {
    const int nall = atom->nlocal + atom->nghost;
    const std::size_t per_thread = 3 * (std::size_t) nall;
    if (thread_forces.size() < (nthreads - 1) * per_thread) {
      thread_forces.resize((nthreads - 1) * per_thread);
      thread_rows.resize((std::size_t) (nthreads - 1) * nall);
    }
    double energy = 0.0;
#if defined(_OPENMP)
#pragma omp parallel num_threads(nthreads) reduction(+ : energy)
#endif
    {
#if defined(_OPENMP)
      const int t = omp_get_thread_num();
#else
      const int t = 0;
#endif
      double **mine = f;
      if (t > 0) {
        double *block = thread_forces.data() + (t - 1) * per_thread;
        std::fill(block, block + per_thread, 0.0);
        mine = thread_rows.data() + (std::size_t) (t - 1) * nall;
        for (int k = 0; k < nall; k++) mine[k] = block + 3 * (std::size_t) k;
      }
      // contiguous shares of the local atoms, in the neighbour list's order
      const int first = (int) ((long) inum * t / nthreads);
      const int last = (int) ((long) inum * (t + 1) / nthreads);
      energy += accumulate(first, last, mine, eflag, scratch[t]);
#if defined(_OPENMP)
#pragma omp barrier
#pragma omp for schedule(static)
#endif
      for (int k = 0; k < nall; k++)
        for (int u = 0; u < nthreads - 1; u++) {
          const double *g = thread_forces.data() + u * per_thread + 3 * (std::size_t) k;
          f[k][0] += g[0];
          f[k][1] += g[1];
          f[k][2] += g[2];
        }
    }
    if (eflag_global) eng_vdwl += energy;
  }
  if (vflag_fdotr) virial_fdotr_compute();
}

/* Energies (returned), forces (into f_out) and, with vflag_either, the virial of the pairs of
   the local atoms ilist[first..last). */
ALLOOP_HOT double PairAlloopStudent::accumulate(int first, int last, double **f_out, int eflag,
                                                StudentScratch &s)
{
  double **x = atom->x;
  double **f = f_out;
  int *type = atom->type;
  const int nlocal = atom->nlocal;
  int *ilist = list->ilist, *numneigh = list->numneigh, **firstneigh = list->firstneigh;
  const int C = n_channels, K = n_basis, NM = n_mono, n_el = (int) elements.size();
  const double rc = cutoff, rcsq = cutoff * cutoff, inv_rc = 1.0 / cutoff;
  size_scratch(s, 0);
  double *T = s.T.data(), *dT = s.dT.data(), *pw = s.pw.data();
  double *moments = s.moments.data(), *mono = s.mono.data();
  double *amono = s.amono.data(), *bmono = s.bmono.data();
  double total = 0.0;

  for (int ii = first; ii < last; ii++) {
    const int i = ilist[ii];
    const int a = type_element[type[i]];
    const double xi = x[i][0], yi = x[i][1], zi = x[i][2];
    int *jlist = firstneigh[i];
    const int jnum = numneigh[i];
    size_scratch(s, jnum);
    double *pr = s.pr.data(), *pu = s.pu.data();
    double *pradial = s.pradial.data(), *pdradial = s.pdradial.data();
    int *pj = s.pj.data();
    // pass 1: pairs within the cutoff, their basis, and the moments
    for (int k = 0; k < C * NM; k++) moments[k] = 0.0;
    int n = 0;
    for (int jj = 0; jj < jnum; jj++) {
      const int j = jlist[jj] & NEIGHMASK;
      const double dx = x[j][0] - xi, dy = x[j][1] - yi, dz = x[j][2] - zi;
      const double rsq = dx * dx + dy * dy + dz * dz;
      if (rsq >= rcsq) continue;
      const double r = std::sqrt(rsq), inv_r = 1.0 / r;    // the pair's only division
      const double ux = dx * inv_r, uy = dy * inv_r, uz = dz * inv_r;
      // envelope (1 - x^2)^2 / x^decay and its r-derivative
      const double xr = r * inv_rc, t = 2.0 * xr - 1.0, one = 1.0 - xr * xr;
      const double inv_x = rc * inv_r;
      double inv_pow = 1.0;
      for (int e = 0; e < decay; e++) inv_pow *= inv_x;
      const double env = one * one * inv_pow;
      const double denv = (-4.0 * xr * one * inv_rc - decay * one * one * inv_r) * inv_pow;
      T[0] = 1.0;
      dT[0] = 0.0;
      if (K > 1) { T[1] = t; dT[1] = 1.0; }
      for (int k = 2; k < K; k++) {
        T[k] = 2.0 * t * T[k - 1] - T[k - 2];
        dT[k] = 2.0 * T[k - 1] + 2.0 * t * dT[k - 1] - dT[k - 2];
      }
      for (int k = 0; k < K; k++) {
        dT[k] = dT[k] * (2.0 * inv_rc) * env + T[k] * denv;    // dB_k/dr
        T[k] *= env;                                       // B_k
      }
      const int b = type_element[type[j]];
      const double *W = &mixing[(std::size_t) (a * n_el + b) * C * K];
      double *R = &pradial[(std::size_t) C * n], *dR = &pdradial[(std::size_t) C * n];
      for (int c = 0; c < C; c++) {
        double s = 0.0, ds = 0.0;
#pragma omp simd reduction(+ : s, ds)
        for (int k = 0; k < K; k++) {
          s += W[c * K + k] * T[k];
          ds += W[c * K + k] * dT[k];
        }
        R[c] = s;
        dR[c] = ds;
      }
      for (int e = 0; e < 3; e++) pw[e * (lmax + 1)] = 1.0;
      const double u[3] = {ux, uy, uz};
      for (int e = 0; e < 3; e++)
        for (int p = 1; p <= lmax; p++) pw[e * (lmax + 1) + p] = pw[e * (lmax + 1) + p - 1] * u[e];
      for (int m = 0; m < NM; m++)
        mono[m] = pw[mono_p[m]] * pw[(lmax + 1) + mono_q[m]] * pw[2 * (lmax + 1) + mono_s[m]];
      for (int c = 0; c < C; c++) {
        double *Mc = &moments[(std::size_t) c * NM];
        const double Rc = R[c];
        for (int m = 0; m < NM; m++) Mc[m] += Rc * mono[m];
      }
      pr[4 * n] = inv_r; pr[4 * n + 1] = dx; pr[4 * n + 2] = dy; pr[4 * n + 3] = dz;
      pu[3 * n] = ux; pu[3 * n + 1] = uy; pu[3 * n + 2] = uz;
      pj[n] = j;
      n++;
    }
    // the network, and dE_i/dM
    const double ei = atom_energy(a, s);
    total += ei;
    if (eflag && eflag_atom) eatom[i] += ei;
    // pass 2: dE_i/dr_ij for every pair
    const double *G = s.grad_moments.data();
    for (int q = 0; q < n; q++) {
      const double inv_r = pr[4 * q];
      const double u[3] = {pu[3 * q], pu[3 * q + 1], pu[3 * q + 2]};
      const double *R = &pradial[(std::size_t) C * q], *dR = &pdradial[(std::size_t) C * q];
      for (int m = 0; m < NM; m++) amono[m] = bmono[m] = 0.0;
      for (int c = 0; c < C; c++) {
        const double *Gc = G + (std::size_t) c * NM;
        const double Rc = R[c], dRc = dR[c];
        for (int m = 0; m < NM; m++) {
          amono[m] += Gc[m] * Rc;
          bmono[m] += Gc[m] * dRc;
        }
      }
      for (int e = 0; e < 3; e++) pw[e * (lmax + 1)] = 1.0;
      for (int e = 0; e < 3; e++)
        for (int p = 1; p <= lmax; p++) pw[e * (lmax + 1) + p] = pw[e * (lmax + 1) + p - 1] * u[e];
      const int L1 = lmax + 1;
      double radial_part = 0.0, gx = 0.0, gy = 0.0, gz = 0.0;
      for (int m = 0; m < NM; m++) {
        const int p = mono_p[m], qq = mono_q[m], s = mono_s[m];
        const double px = pw[p], py = pw[L1 + qq], pz = pw[2 * L1 + s];
        const double value = px * py * pz;
        const double am = amono[m] * inv_r;
        radial_part += (bmono[m] - am * mono_l[m]) * value;
        if (p > 0) gx += am * p * pw[p - 1] * py * pz;
        if (qq > 0) gy += am * qq * px * pw[L1 + qq - 1] * pz;
        if (s > 0) gz += am * s * px * py * pw[2 * L1 + s - 1];
      }
      const double fx = radial_part * u[0] + gx;    // dE_i/dr_ij
      const double fy = radial_part * u[1] + gy;
      const double fz = radial_part * u[2] + gz;
      const int j = pj[q];
      f[i][0] += fx; f[i][1] += fy; f[i][2] += fz;
      f[j][0] -= fx; f[j][1] -= fy; f[j][2] -= fz;
      if (vflag_either)
        ev_tally_xyz(i, j, nlocal, force->newton_pair, 0.0, 0.0, fx, fy, fz, -pr[4 * q + 1],
                     -pr[4 * q + 2], -pr[4 * q + 3]);
    }
  }
  return total;
}
