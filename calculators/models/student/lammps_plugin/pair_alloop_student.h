/* al-loop's student as a LAMMPS pair style: `pair_style alloop/student`,
   `pair_coeff * * FILE.student El1 El2 ...` (one element per atom type).
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

class PairAlloopStudent : public Pair {
 public:
  PairAlloopStudent(class LAMMPS *);
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

  // scratch, grown as needed
  int max_pairs = 0;
  std::vector<double> pr, pu, pradial, pdradial;    // per pair: 1/r, r_ij; u; R_c; dR_c/dr
  std::vector<int> pj;
  std::vector<double> moments, grad_moments, feats, grad_feats, work, mono, dmono;
  std::vector<double> amono, bmono;

  void read_file(const std::string &path);
  void allocate();
  double atom_energy(int element, double *grad_moments_out);
  void accumulate(int eflag);    // the body of compute(), one clone per instruction set
};

}    // namespace LAMMPS_NS

#endif
