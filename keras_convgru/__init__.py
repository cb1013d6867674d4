"""keras_convgru: convolutional recurrent layers for Keras 3: ConvGRU,
ConvLSTM, TrajGRU, and the spatiotemporal memory cells of PredRNN,
PredRNN++ and SA-ConvLSTM."""

from keras_convgru import losses
from keras_convgru import metrics
from keras_convgru import models
from keras_convgru.conv_gru import ConvGRU1D
from keras_convgru.conv_gru import ConvGRU1DCell
from keras_convgru.conv_gru import ConvGRU2D
from keras_convgru.conv_gru import ConvGRU2DCell
from keras_convgru.conv_gru import ConvGRU3D
from keras_convgru.conv_gru import ConvGRU3DCell
from keras_convgru.conv_gru import ConvGRUCell
from keras_convgru.conv_lstm import ConvLSTM1D
from keras_convgru.conv_lstm import ConvLSTM1DCell
from keras_convgru.conv_lstm import ConvLSTM2D
from keras_convgru.conv_lstm import ConvLSTM2DCell
from keras_convgru.conv_lstm import ConvLSTM3D
from keras_convgru.conv_lstm import ConvLSTM3DCell
from keras_convgru.conv_lstm import ConvLSTMCell
from keras_convgru.conv_rnn import ConvRNN
from keras_convgru.predrnn import CausalLSTM2D
from keras_convgru.predrnn import CausalLSTM2DCell
from keras_convgru.predrnn import GradientHighwayUnit2DCell
from keras_convgru.predrnn import SpatioTemporalLSTM2D
from keras_convgru.predrnn import SpatioTemporalLSTM2DCell
from keras_convgru.sa_conv_lstm import SAConvLSTM2D
from keras_convgru.sa_conv_lstm import SAConvLSTM2DCell
from keras_convgru.traj_gru import TrajGRU2D
from keras_convgru.traj_gru import TrajGRU2DCell

__version__ = "0.1.0"

__all__ = [
    "ConvGRUCell",
    "ConvGRU1DCell",
    "ConvGRU2DCell",
    "ConvGRU3DCell",
    "ConvLSTMCell",
    "ConvLSTM1DCell",
    "ConvLSTM2DCell",
    "ConvLSTM3DCell",
    "ConvRNN",
    "ConvGRU1D",
    "ConvGRU2D",
    "ConvGRU3D",
    "ConvLSTM1D",
    "ConvLSTM2D",
    "ConvLSTM3D",
    "TrajGRU2DCell",
    "TrajGRU2D",
    "SpatioTemporalLSTM2DCell",
    "SpatioTemporalLSTM2D",
    "CausalLSTM2DCell",
    "CausalLSTM2D",
    "GradientHighwayUnit2DCell",
    "SAConvLSTM2DCell",
    "SAConvLSTM2D",
    "__version__",
]
