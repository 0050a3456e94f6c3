"""The frame-order head study: can an order-sensitive path from the frames to the clip feature
make the tower tell a clip from its reversal? (studies/frame_order/README.md)"""
