/* al-loop's student as a LAMMPS pair style: `pair_style alloop/student`,
   `pair_coeff * * FILE.student El1 El2 ...` (one element per atom type).
   `alloop/student/omp` is the same style on OpenMP threads, LAMMPS's usual way: `package omp N`
   (or `-sf omp -pk omp N` on the command line) sets the threads; each thread takes a share of
   the local atoms and adds its forces into its own array, summed after the loop.
   The descriptor and the network are documented in calculators/models/student/descriptor.py
   and network.py; this file computes the same numbers in the same order. */

#ifndef LMP_PAIR_ALLOOP_STUDENT_H
#define LMP_PAIR_ALLOOP_STUDENT_H

#include "pair.h"

#include <string>
#include <vector>

namespace LAMMPS_NS {

struct StudentLayer {
  int n_in = 0, n_out = 0;
  std::vector<double> weight;    // n_out x n_in, row-major
  std::vector<double> bias;      // n_out
};

struct StudentElement {
  std::string symbol;
  double e0 = 0.0;
  std::vector<double> shift, scale;    // n_features each
  std::vector<StudentLayer> layers;
};

/* What one thread needs for one atom at a time, grown as needed. */
struct StudentScratch {
  int max_pairs = 0;
  std::vector<double> pr, pu, pradial, pdradial;    // per pair: 1/r, r_ij; u; R_c; dR_c/dr
  std::vector<int> pj;
  std::vector<double> moments, grad_moments, feats, grad_feats, work, mono, amono, bmono;
  std::vector<double> T, dT, pw;
};

class PairAlloopStudent : public Pair {
 public:
  PairAlloopStudent(class LAMMPS *, bool threaded = false);
  ~PairAlloopStudent() override;
  void compute(int, int) override;
  void settings(int, char **) override;
  void coeff(int, char **) override;
  void init_style() override;
  double init_one(int, int) override;

 protected:
  // the model file
  std::vector<std::string> elements;
  double cutoff = 0.0;
  int n_basis = 0, n_channels = 0, lmax = 0, decay = 0, n_features = 0, n_mono = 0;
  std::vector<double> mixing;    // [a*n+b][c][k]
  std::vector<StudentElement> nets;
  std::vector<int> mono_p, mono_q, mono_s, mono_l;
  std::vector<double> mono_w;
  std::vector<int> type_element;    // per LAMMPS type, index into elements

  bool threaded;                          // the /omp style: comm->nthreads threads
  std::vector<StudentScratch> scratch;    // one per thread
  std::vector<double> thread_forces;      // (threads - 1) x nall x 3; thread 0 adds into f
  std::vector<double *> thread_rows;      // their rows, as LAMMPS's double **f

  void read_file(const std::string &path);
  void allocate();
  void size_scratch(StudentScratch &s, int pairs) const;
  double atom_energy(int element, StudentScratch &s) const;
  // the body of compute() for the local atoms [first, last), forces added into f;
  // one clone per instruction set
  double accumulate(int first, int last, double **f_out, int eflag, StudentScratch &s);
};

}    // namespace LAMMPS_NS

#endif
