"""Keras-named layers as torch.nn.Modules: `from ember import layers; layers.Dense(10)`."""
from ember.layers.activations import ACTIVATIONS
from ember.layers.attention import MultiHeadAttention
from ember.layers.augmentation import (RandomBrightness, RandomContrast, RandomCrop, RandomErasing, RandomFlip,
                                       RandomRotation, RandomTranslation, RandomZoom)
from ember.layers.audio import MFCC, MelSpectrogram, SpecAugment
from ember.layers.base import Layer
from ember.layers.blocks import ResidualBlock
from ember.layers.collaborative import MatrixFactorization, NeuMF, SVDPlusPlus
from ember.layers.conv import Conv1D, Conv2D
from ember.layers.embedding import Embedding
from ember.layers.recurrent import GRU, LSTM, Bidirectional, SimpleRNN
from ember.layers.mixing import CutMix, MixUp
from ember.layers.text import TextVectorization, TokenAugmentation
from ember.layers.transformer import (BertEmbedding, FirstTokenPooling, PositionalEmbedding, SinePositionEncoding,
                                      TransformerDecoder, TransformerEncoder)
from ember.layers.core import (Activation, Dense, Dropout, Flatten, Input, InputLayer, Rescaling, Reshape,
                              TimeDistributed)
from ember.layers.normalization import BatchNormalization, LayerNormalization, UnitNormalization
from ember.layers.pooling import (AveragePooling1D, AveragePooling2D, GlobalAveragePooling1D,
                                  GlobalAveragePooling2D, GlobalMaxPooling1D, GlobalMaxPooling2D,
                                  MaxPooling1D, MaxPooling2D)

# Every class a model file may name; loading refuses any other (see models/saving.py).
LAYERS: dict[str, type[Layer]] = {cls.__name__: cls for cls in (
    InputLayer, Dense, Activation, Flatten, Reshape, Dropout, Rescaling, Conv1D, Conv2D,
    MaxPooling1D, MaxPooling2D, AveragePooling1D, AveragePooling2D, GlobalAveragePooling1D,
    GlobalAveragePooling2D, GlobalMaxPooling1D, GlobalMaxPooling2D, BatchNormalization,
    ResidualBlock, Embedding, SimpleRNN, LSTM, GRU, Bidirectional, TextVectorization,
    LayerNormalization, MultiHeadAttention, PositionalEmbedding, SinePositionEncoding, TransformerEncoder,
    TransformerDecoder, BertEmbedding, FirstTokenPooling, UnitNormalization,
    TimeDistributed, MatrixFactorization, NeuMF, SVDPlusPlus, MelSpectrogram, MFCC, SpecAugment,
    RandomFlip, RandomRotation, RandomZoom, RandomTranslation, RandomCrop, RandomContrast, RandomBrightness,
    RandomErasing, MixUp, CutMix, TokenAugmentation,
)}

# training-only layers: what a config's model.augmentation may hold
AUGMENTATION_LAYERS = (RandomFlip, RandomRotation, RandomZoom, RandomTranslation, RandomCrop, RandomContrast,
                       RandomBrightness, RandomErasing, MixUp, CutMix, TokenAugmentation)

# Keras's aliases
MaxPool1D, MaxPool2D, AvgPool1D, AvgPool2D = MaxPooling1D, MaxPooling2D, AveragePooling1D, AveragePooling2D
GlobalAvgPool1D, GlobalAvgPool2D = GlobalAveragePooling1D, GlobalAveragePooling2D
GlobalMaxPool1D, GlobalMaxPool2D = GlobalMaxPooling1D, GlobalMaxPooling2D

__all__ = ["Layer", "LAYERS", "ACTIVATIONS", "AUGMENTATION_LAYERS", *LAYERS, "Input", "MaxPool1D", "MaxPool2D", "AvgPool1D", "AvgPool2D",
           "GlobalAvgPool1D", "GlobalAvgPool2D", "GlobalMaxPool1D", "GlobalMaxPool2D"]
