import os
import sys

# the stage scripts and modules live at the top level of the repository
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
