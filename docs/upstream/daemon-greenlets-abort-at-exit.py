import threading
import time

import greenlet


def spin():
    def inner():
        while True:
            time.sleep(0)
            greenlet.getcurrent().parent.switch()
    def loop():
        g = greenlet.greenlet(inner)
        while True:
            g.switch()
            time.sleep(0)
    greenlet.greenlet(loop).switch()
threading.Thread(target=spin, daemon=True).start()
time.sleep(0.01)
