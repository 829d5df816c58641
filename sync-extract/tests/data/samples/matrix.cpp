// Dense matrices.
#include <vector>
#include <stdexcept>

namespace linalg {

/// A dense row-major matrix.
template <typename T>
class Matrix {
public:
    Matrix(size_t rows, size_t cols) : rows_(rows), cols_(cols), data_(rows * cols) {}

    /// The element at (r, c).
    T& at(size_t r, size_t c) {
        if (r >= rows_ || c >= cols_) {
            throw std::out_of_range("index");
        }
        return data_[r * cols_ + c];
    }

    size_t rows() const { return rows_; }
    size_t cols() const { return cols_; }

private:
    size_t rows_;
    size_t cols_;
    std::vector<T> data_;
};

/// The product of two matrices.
template <typename T>
Matrix<T> multiply(Matrix<T>& a, Matrix<T>& b) {
    Matrix<T> out(a.rows(), b.cols());
    for (size_t i = 0; i < a.rows(); ++i) {
        for (size_t j = 0; j < b.cols(); ++j) {
            T sum{};
            for (size_t k = 0; k < a.cols(); ++k) {
                sum += a.at(i, k) * b.at(k, j);
            }
            out.at(i, j) = sum;
        }
    }
    return out;
}

struct Shape {
    size_t rows;
    size_t cols;
};

}  // namespace linalg

int main() {
    linalg::Matrix<double> m(2, 2);
    m.at(0, 0) = 1.0;
    return 0;
}
